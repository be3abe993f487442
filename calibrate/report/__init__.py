"""Predicted versus measured: the check, the accuracy report, interval coverage and the uncertainty section."""

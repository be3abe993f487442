"""Fit a profile's coefficients to measured runs: offline, online and serving fits, transfer cases."""

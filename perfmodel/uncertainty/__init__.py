"""Calibrated intervals on predicted figures (intervals)."""

"""Errors meant for the user rather than for a traceback."""


class UserError(Exception):
    """One-line message for the user; CLI exits 2."""

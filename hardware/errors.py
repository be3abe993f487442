"""The base class of every error meant for the user (one line, exit 2), defined in the leaf package so that
``hardware``'s own errors can subclass it while hardware imports nothing of ours; everyone else imports it as
``perfmodel.errors.UserError``."""


class UserError(Exception):
    """One-line message for the user; the CLI prints it and exits 2."""

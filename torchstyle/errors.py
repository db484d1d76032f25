"""Errors that mean "the user asked for something wrong", not "torchstyle broke"."""


class UserError(Exception):
    """Bad input: the CLI prints the message on one line and exits with code 2, no traceback.

    The message names the problem and the fix.
    """

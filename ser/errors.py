"""The one exception family for bad input: every message names the file or row and the fix.

The CLI prints these as one line and exits with status 2; anything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
    """Bad input (a file, a row, an option) rather than a bug in ser."""

"""The one error type the CLI turns into a clean message and a non-zero exit."""


class PadError(Exception):
    """A user-facing error: bad input, mismatched artifacts, missing files.

    The message names the file, row or field and what was expected.
    """

"""The one error type the CLI turns into a clean message and a non-zero exit."""

import re


class PadError(Exception):
    """A user-facing error: bad input, mismatched artifacts, missing files.

    The message names the file, row or field and what was expected, on one line:
    line breaks in it (from a quoted library error, say) become spaces.
    """

    def __init__(self, message: str):
        super().__init__(re.sub(r"\s*\n\s*", " ", message).strip())

"""User-facing errors.

A `UserError` is a problem with what the user asked for (bad data, bad config, an existing output
directory...). The CLI prints its message on one line and exits with code 2, without a traceback.
Messages name the problem and the fix.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input; the message says what is wrong and how to fix it."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # one line, always: the CLI prints it as-is
        super().__init__(" ".join(str(message).split()))

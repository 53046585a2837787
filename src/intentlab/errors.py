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


class ModelNotFound(UserError):
    """A base model (a local folder or a Hugging Face id) that cannot be loaded; `reason` says why."""

    def __init__(self, name: str, reason: str, fix: str) -> None:
        self.name, self.reason = name, reason
        super().__init__(f"cannot load model {name!r} ({reason}). {fix}")


class Interrupted(Exception):
    """Training stopped on a signal after writing a checkpoint (exit 130; resume with --resume)."""

    exit_code = 130

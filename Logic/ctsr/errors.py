"""The one exception type for mistakes a user can fix (bad input, wrong model folder, ...).

Its message is one sentence shown as is, with no traceback, by the CLI, the worker and the
Slicer module. Anything else that escapes is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or settings; ``str(error)`` is one clear sentence."""


class Cancelled(Exception):
    """The job was cancelled (Ctrl-C, SIGTERM from the Slicer module, a cancel callback)."""

"""The one exception type for mistakes a user can fix (bad input, wrong model folder, ...).

Its message is one sentence shown as is, with no traceback, by the CLI, the worker and the
Slicer module. Anything else that escapes is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input or settings; ``str(error)`` is one clear sentence."""


class Cancelled(Exception):
    """The job was cancelled (Ctrl-C, SIGTERM from the Slicer module, a cancel callback)."""


def check_seed(seed) -> int:
    """``seed`` as an int: a whole number from 0 (what numpy's and torch's generators take);
    :class:`UserError` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UserError(f"the seed must be a whole number from 0 up, not {seed!r}.")
    return seed


def seed_argument(text: str) -> int:
    """``--seed``'s argparse type in every command: :func:`check_seed` of the text."""
    import argparse

    try:
        return check_seed(int(text))
    except (ValueError, UserError):
        raise argparse.ArgumentTypeError(f"the seed must be a whole number from 0 up, not {text!r}") from None

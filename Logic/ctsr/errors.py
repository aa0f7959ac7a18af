"""The one exception type for mistakes a user can fix (bad input, wrong model folder, ...).

Its message is one sentence shown as is, with no traceback, by the CLI, the worker and the
Slicer module. Anything else that escapes is a bug and keeps its traceback.
"""

from contextlib import contextmanager


class UserError(Exception):
    """A problem with the user's input or settings; ``str(error)`` is one clear sentence."""


class Cancelled(Exception):
    """The job was cancelled (Ctrl-C, SIGTERM from the Slicer module, a cancel callback)."""


@contextmanager
def known_errors():
    """Inside it, what a user can act on leaves as such: a package missing from this Python (not
    a module of ``ctsr`` itself) as a :class:`UserError`, exhausted GPU memory (torch's ``OutOfMemoryError``, a ``RuntimeError``)
    as a ``MemoryError``; anything else as it was. The CLI, the worker and a batch's scans all
    run their job inside it."""
    try:
        yield
    except ModuleNotFoundError as error:
        if not error.name or error.name.split(".")[0] == "ctsr":  # a broken install of this package: a bug
            raise
        raise UserError(f"the Python package {error.name!r} that this needs is not installed in this "
                        "Python.") from None
    except RuntimeError as error:
        if "out of memory" not in str(error).lower():
            raise
        raise MemoryError(str(error)) from None


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

"""What the panel does with a user action when it fails: one message in the error display.

Slicer's template wraps every user action in ``slicer.util.tryWithErrorDisplay``; this is the
same contract without Qt, so that it is tested headless: every failure of the action reaches
``show_error`` (the widget passes ``slicer.util.errorDisplay``) as one message, never only a
traceback in the Python console. A :class:`ctsr.errors.UserError` is shown as its sentence; any
other exception (a failed or declined installation, a worker that cannot start, an unexpected
node) as ``what`` and the reason, with the traceback in the application log.
"""

from __future__ import annotations

import logging
import subprocess

from ctsr.errors import UserError


def run_action(action, show_error, what: str):
    """``action()``'s result, or None after showing why it failed (module docstring)."""
    try:
        return action()
    except UserError as error:
        text = str(error)
        show_error(text[:1].upper() + text[1:])
    except subprocess.CalledProcessError as error:
        logging.exception(what)
        show_error(f"{what}: the command {' '.join(map(str, error.cmd or []))[:200]} failed "
                   f"(exit status {error.returncode}); see the application log for its output.")
    except Exception as error:  # noqa: BLE001 - the point is that nothing escapes unseen
        logging.exception(what)
        show_error(f"{what}: {type(error).__name__}: {error}")
    return None

"""SIGINT and SIGTERM stop ``model.fit`` at once, as `TrainingInterrupted`."""

import contextlib
import signal
import threading


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by the SIGINT/SIGTERM handler to stop ``model.fit`` at once."""


def _raise_interrupted(signal_number, frame):
    raise TrainingInterrupted(signal.Signals(signal_number).name)


@contextlib.contextmanager
def interrupted_by_signals():
    """Within it, SIGINT and SIGTERM raise `TrainingInterrupted`.

    The previous handlers come back on leaving. Off the main thread, where
    Python cannot install signal handlers, nothing changes.
    """
    previous_handlers = (
        {
            number: signal.signal(number, _raise_interrupted)
            for number in (signal.SIGINT, signal.SIGTERM)
        }
        if threading.current_thread() is threading.main_thread()
        else {}
    )
    try:
        yield
    finally:
        for number, handler in previous_handlers.items():
            signal.signal(number, handler)

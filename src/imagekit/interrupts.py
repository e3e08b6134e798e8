"""Ctrl-C and SIGTERM held back while something must finish whole (a container the engine creates, a run's
cleanup): the CLI's handlers raise them as exceptions in the main thread."""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def held_back() -> Iterator[None]:
    """Ctrl-C and SIGTERM held back until the block ends, then raised as they would have been. Their handlers
    run in the main thread whichever thread the kernel chose, so they are set aside, not masked."""
    if threading.current_thread() is not threading.main_thread():
        yield  # a handler never raises in this thread
        return
    caught: list[int] = []
    before = {s: h for s in (signal.SIGINT, signal.SIGTERM) if (h := signal.getsignal(s)) is not None}
    for s in before:  # a handler set outside Python (None here) is left alone
        signal.signal(s, lambda n, _: caught.append(n))
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        for n in caught[:1]:
            signal.raise_signal(n)

"""The one wait loop: ask a probe until it answers, the deadline passes, or what it waits on is gone;
say what was waited for and the last thing seen. Waiting is never how a negative is proved: a probe
that can tell "never" (a container that exited) says so through ``gone`` and the loop stops at once."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from imagekit.errors import EngineError

T = TypeVar("T")


@dataclass(frozen=True)
class Pending:
    """A probe's "not yet", with what it saw (shown if the wait ends without an answer)."""
    seen: str


class NotReady(EngineError):
    """What was waited for did not come: in time, or ever (``gone``)."""

    def __init__(self, what: str, seconds: float, seen: str, *, gone: str = "") -> None:
        super().__init__(f"{what}: {gone}" if gone else f"{what} did not come within {seconds:.0f} s"
                         + (f"; last seen: {seen}" if seen else ""))
        self.what, self.seen, self.gone, self.seconds = what, seen, gone, seconds


def until(what: str, probe: Callable[[], T], timeout: float, *, every: float = 0.5,
          retry: tuple[type[BaseException], ...] = (), gone: Callable[[], str] | None = None) -> T:
    """``probe()``'s first answer: a true value that is not Pending. An exception of ``retry`` is a
    "not yet" (the last one is what was seen); any other one propagates, bugs included. ``gone()``
    returns why waiting longer cannot help ("" while it can): then NotReady at once."""
    started = time.monotonic()
    seen = ""
    while True:
        try:
            value = probe()
        except retry as e:
            value, seen = None, f"{type(e).__name__}: {str(e).strip()[:300]}"
        if isinstance(value, Pending):
            value, seen = None, value.seen
        if value:
            return value
        elapsed = time.monotonic() - started
        why = gone() if gone else ""
        if why:
            raise NotReady(what, elapsed, seen, gone=why)
        if elapsed > timeout:
            raise NotReady(what, elapsed, seen)
        time.sleep(every)

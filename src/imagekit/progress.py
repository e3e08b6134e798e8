"""How core functions report progress. A step is ``on_line(message)``; the raw output of the tools
they run (debootstrap, pip, the Docker builder, pushes) goes to ``output(on_line)``, which a sink
may show only when asked to (the CLI's ``--verbose``). A plain function receives both. Where the time
went is returned as data: ``Phases``."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

Sink = Callable[[str], None]


class Phases(dict):
    """Where a piece of work's time went: seconds per phase, summed over every block timed as that phase."""

    @contextlib.contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self[phase] = round(self.get(phase, 0.0) + time.monotonic() - started, 2)


def output(on_line: Sink | None) -> Sink:
    """Where tool output goes: the sink's ``output`` if it has one, else the sink itself."""
    if on_line is None:
        return lambda line: None
    return getattr(on_line, "output", on_line)

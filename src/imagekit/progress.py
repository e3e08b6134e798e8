"""How core functions report progress. A step is ``on_line(message)``; the raw output of the tools
they run (debootstrap, pip, the Docker builder, pushes) goes to ``output(on_line)``, which a sink
may show only when asked to (the CLI's ``--verbose``). A plain function receives both."""
from __future__ import annotations

from collections.abc import Callable

Sink = Callable[[str], None]


def output(on_line: Sink | None) -> Sink:
    """Where tool output goes: the sink's ``output`` if it has one, else the sink itself."""
    if on_line is None:
        return lambda line: None
    return getattr(on_line, "output", on_line)

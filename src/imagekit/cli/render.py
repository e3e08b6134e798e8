"""Result tables that never squeeze what they say.

Off a terminal (stdout or stderr piped: a CI log), a table is one line per item: the verdict, the full
identifier (a model's whole key, an image with its digest, a check's name), each column as
``column=value``, then the whole reason. A log has no width, and a line that holds the item and why
it failed is what a person searching a failed job's log finds at once. On a terminal (its width:
COLUMNS when set), a rich table whose identifier column is as wide as its longest identifier and
never cut; when the terminal is too narrow for that, the one-line form.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table

from imagekit.cli._common import err, escape, out

MIN_REASON = 24  # the narrowest reason column a table is worth showing on a terminal


@dataclass(frozen=True)
class Row:
    name: str  # the full identifier
    ok: bool
    cells: dict[str, str] = field(default_factory=dict)  # column -> a short value
    reason: str = ""  # the whole reason, or what passed says


def _verdict(ok: bool, styled: bool) -> str:
    word = "pass" if ok else "FAIL"
    return (f"[green]{word}[/]" if ok else f"[red]{word}[/]") if styled else word


def lines(rows: list[Row]) -> list[str]:
    """The one-line form: ``VERDICT  NAME  column=value ...  reason``."""
    return [escape("  ".join(filter(None, [_verdict(r.ok, False), r.name,
                                           " ".join(f"{k}={v}" for k, v in r.cells.items() if v), r.reason])))
            for r in rows]


def table(heading: str, rows: list[Row]) -> None:
    """Print ``rows`` (``heading`` names the identifier column) in the form that keeps every identifier
    and reason whole where they are read."""
    columns = list(dict.fromkeys(k for r in rows for k in r.cells))
    width = max((len(r.name) for r in rows), default=len(heading))
    cells = sum(max([len(k), *(len(r.cells.get(k, "")) for r in rows)]) + 3 for k in columns)
    if not (out.is_terminal and err.is_terminal) or width + cells + 10 + MIN_REASON > out.width:
        for line in lines(rows):
            out.print(line, soft_wrap=True, highlight=False)
        return
    grid = Table("", heading, *columns, "detail")
    grid.columns[1].min_width = grid.columns[1].max_width = width
    grid.columns[1].no_wrap = True
    for r in rows:
        grid.add_row(_verdict(r.ok, True), escape(r.name), *(escape(r.cells.get(k, "")) for k in columns),
                     escape(r.reason))
    out.print(grid)

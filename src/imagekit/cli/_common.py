"""What every command shares: loading the config with flag overrides, and rendering results."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from imagekit import config, files, redact
from imagekit.errors import ImagekitError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
__all__ = ["State", "command", "load", "emit", "escape", "out", "err", "JSON"]

asked: dict[str, object] = {}  # what the command line asked for, once parsed: the error handler answers in kind


def _json(ctx: typer.Context, value: bool) -> bool:
    if value:
        asked.update(json=True, command=ctx.info_name)
    return value


JSON = typer.Option(False, "--json", callback=_json, help="print the result as JSON (for CI)")
JUNIT = typer.Option(None, "--junit", help="write a JUnit XML file: one test case per check, scenario or model")
REPORT = typer.Option(None, "--report", help="write the JSON report (what --json prints) to this file")


def prose(doc: str) -> str:
    """A docstring as help text: paragraphs whose hard line breaks are joined (rich wraps them at the
    terminal's width), and each ``Example:`` line a paragraph of its own."""
    paragraphs = []
    for block in inspect.cleandoc(doc or "").split("\n\n"):
        current: list[str] = []
        for line in block.splitlines():
            if line.startswith("Example:") and current:
                paragraphs.append(" ".join(current))
                current = []
            current.append(line.strip())
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs)


def command(app: typer.Typer, name: str, fn) -> None:
    """Register ``fn`` as the command ``name``: its docstring's first paragraph (one line) is what the
    command list shows, the rest reads as prose at any width."""
    text = prose(fn.__doc__)
    app.command(name, help=text, short_help=text.split("\n\n")[0])(fn)


@dataclass
class State:
    config: Path | None
    quiet: bool = False
    verbose: bool = False


def load(ctx: typer.Context, **overrides: Any) -> config.Config:
    """The config, with flag values (None: flag not given) overriding "section.key" settings."""
    cfg = config.load(ctx.obj.config, overrides={k.replace("__", "."): v for k, v in overrides.items()})
    for warning in cfg.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    return cfg


def to_data(value: Any) -> Any:
    """Results as JSON data all the way down: dataclasses become objects, never a repr in a string."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: to_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(getattr(type(value), "ok", None), property):
            data["ok"] = value.ok
        return data
    if isinstance(value, dict):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_data(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"{type(value).__name__} is not JSON data")


def envelope(command: str, *, result: Any = None, error: ImagekitError | None = None, ok: bool = True) -> dict:
    """What --json prints, the same shape on success and failure:
    {"command", "ok", "result" (the command's data, or null), "error" (null, or kind, message,
    hint, exit_code, differences)}."""
    return {"command": command, "ok": ok and error is None, "result": None if error else to_data(result),
            "error": error.as_dict() if error else None}


def print_json(data: dict) -> None:
    out.print_json(json.dumps(redact.data(data)))


def emit(ctx: typer.Context, result: Any, as_json: bool, human: str, *, ok: bool = True) -> None:
    """The result: JSON (see envelope) or the human text. ``ok`` False: a check found a failure."""
    if as_json:
        print_json(envelope(ctx.info_name, result=result, ok=ok))
    else:
        out.print(redact.text(human))


class _Sink:
    """Where a long command's steps go: a status line on a terminal; one timestamped line per step
    in a CI log (stderr not a terminal); tool output too with --verbose; nothing with --quiet."""

    def __init__(self, what: str, state: State, status=None) -> None:
        self.what, self.state, self.status = what, state, status

    def __call__(self, line: str) -> None:
        self._show(line, step=True)

    def output(self, line: str) -> None:
        self._show(line, step=False)

    def _show(self, line: str, *, step: bool) -> None:
        line = redact.text(line.rstrip())
        if not line.strip() or self.state.quiet:
            return
        if self.status is not None and not self.state.verbose:
            self.status.update(f"{self.what}: {escape(line.strip()[:100])}")
        elif step or self.state.verbose:
            stamp = datetime.datetime.now().strftime("%H:%M:%S")
            err.print(f"{stamp} {self.what}: {escape(line)}" if step else escape(line), highlight=False)


@contextlib.contextmanager
def progress(ctx: typer.Context, what: str):
    """The progress sink of a long command (see _Sink)."""
    state = ctx.obj
    if err.is_terminal and not state.quiet and not state.verbose:
        with err.status(f"{what}...") as status:
            yield _Sink(what, state, status)
    else:
        yield _Sink(what, state)


def artifacts(ctx: typer.Context, report, cases: list[tuple[str, bool, str, float]], junit: Path | None,
               report_file: Path | None) -> None:
    """--report: the JSON envelope; --junit: a <testsuite> with a <testcase> per check (a <failure>
    with the reason when it failed)."""
    if report_file:
        files.write(report_file, json.dumps(redact.data(envelope(ctx.info_name, result=report, ok=report.ok)), indent=1))
    if junit:
        suite = ET.Element("testsuite", name=f"imagekit {ctx.info_name}", tests=str(len(cases)),
                           failures=str(sum(not ok for _, ok, _, _ in cases)))
        for name, ok, reason, seconds in cases:
            case = ET.SubElement(suite, "testcase", classname=f"imagekit.{ctx.info_name}", name=name,
                                 time=f"{seconds:.2f}")
            if not ok:
                ET.SubElement(case, "failure", message=redact.text(reason)[:500]).text = redact.text(reason)
        ET.ElementTree(suite).write(junit, encoding="utf-8", xml_declaration=True)

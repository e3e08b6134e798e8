"""What every command shares: loading the config with flag overrides, and rendering results."""
from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from imagekit import config, redact

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
__all__ = ["State", "load", "emit", "escape", "out", "err", "JSON"]

JSON = typer.Option(False, "--json", help="print the result as JSON (for CI)")


@dataclass
class State:
    config: Path | None


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


def emit(result: Any, as_json: bool, human: str) -> None:
    if as_json:
        out.print_json(json.dumps(redact.data(to_data(result))))
    else:
        out.print(human)


@contextlib.contextmanager
def progress(what: str):
    """A status line on stderr showing the latest line of a long operation; yields the line sink."""
    with err.status(f"{what}...") as status:
        def note(line: str) -> None:
            line = line.strip()
            if line:
                status.update(f"{what}: {escape(line[:100])}")
        yield note

"""The one wrapper for subprocesses: every external command goes through ``run``."""
from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from imagekit.errors import ToolError
from imagekit.redact import plain


def run(cmd: Sequence[str | os.PathLike], *, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, on_line: Callable[[str], None] | None = None,
        timeout: float | None = None, hint: str | None = None) -> str:
    """Run ``cmd``; return its stdout. Raise ToolError naming the command when it fails.

    With ``on_line``, stdout and stderr are merged and each line is handed over as it comes
    (for progress); the merged output is returned.
    """
    argv = [str(c) for c in cmd]
    full_env = {**os.environ, **env} if env else None
    try:
        if on_line is None:
            cp = subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
            out, err, code = cp.stdout, cp.stderr, cp.returncode
        else:
            out, code = _stream(argv, cwd, full_env, on_line, timeout)
            err = out
    except FileNotFoundError:
        raise ToolError(f"{argv[0]} is not installed or not on PATH", cmd=argv,
                        hint=hint or "run `make dev-up` to install what imagekit needs") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{argv[0]} did not finish within {timeout:.0f} s", cmd=argv,
                        hint=hint) from None
    if code != 0:
        tail = "\n".join((err or out).strip().splitlines()[-25:])
        raise ToolError(f"{' '.join(argv[:3])} ... failed (exit {code}):\n{tail}", cmd=argv,
                        output=err or out, hint=hint)
    return out


def _stream(argv: list[str], cwd, env, on_line, timeout) -> tuple[str, int]:
    lines: list[str] = []
    with subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL) as p:
        assert p.stdout is not None
        for line in p.stdout:
            lines.append(line)
            on_line(line.rstrip("\n"))
        code = p.wait(timeout=timeout)
    return "".join(lines), code


ERRORS = ("Error", "error")  # what a line naming the failure carries


def reason(output: str, *, prefix: str = "", markers: tuple[str, ...] = ERRORS, follow: int = 0) -> str:
    """The telling line of a tool's output, never its traceback: its ``<prefix>fatal: <why>`` line,
    else the last line carrying the first of ``markers`` found (with the ``follow`` lines after it:
    Ray lists both sides of a mismatch below its first line), else its last line; without terminal
    codes, at most 400 characters."""
    lines = [line.strip() for line in plain(output).splitlines() if line.strip()]
    fatal = [line.split("fatal: ", 1)[1] for line in lines if f"{prefix}fatal: " in line]
    if fatal:
        return fatal[-1][:400]
    for marker in markers:
        found = [i for i, line in enumerate(lines) if marker in line]
        if found:
            return " ".join(lines[found[-1]:found[-1] + 1 + follow])[:400]
    return lines[-1][-400:] if lines else ""


CELL = re.compile(r"^(Cell In\[\d+\], line \d+)(, in [^(\s]+)?")  # IPython's header of a frame in a cell
RAN = re.compile(r"^-*> +\d+ ?(.*)$")  # the line that frame ran: "----> 2     return d['missing']"


def cell(output: str) -> str:
    """Where a notebook's own code was when it failed: the last frame of its traceback that is in a cell, as
    IPython prints it (``Cell In[2], line 4``, ``, in f`` inside a function), with the line it ran; "" if none."""
    lines = [line.strip() for line in plain(output).splitlines()]
    frames = [(i, m) for i, line in enumerate(lines) if (m := CELL.match(line))]
    if not frames:
        return ""
    i, header = frames[-1]
    ran = next((m.group(1).strip() for line in lines[i + 1:] if (m := RAN.match(line))), "")
    return header.group(1) + (header.group(2) or "") + (f": {ran[:200]}" if ran else "")


def last_json(output: str) -> dict | None:
    """The last line of ``output`` that is a JSON object (what a command in a container said it found)."""
    for line in reversed(output.splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict):
                return data
    return None

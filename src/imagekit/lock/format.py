"""pip-tools' lock format: a header of ``# key: value`` lines, then ``name==version`` with ``--hash`` lines."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from imagekit import files
from imagekit.digests import sha256_hex
from imagekit.errors import ConfigError, PreconditionError

REGENERATE = "imagekit lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_HEADER = re.compile(r"^# (inputs-sha256|inputs|body-sha256|target|resolver): (.*)$", re.M)


@dataclass(frozen=True)
class Pin:
    name: str  # canonical (PEP 503) name
    version: str
    hashes: tuple[str, ...]

    def render(self) -> str:
        return " \\\n    ".join([f"{self.name}=={self.version}", *(f"--hash={h}" for h in self.hashes)])


@dataclass(frozen=True)
class Lock:
    pins: dict[str, Pin]
    header: dict[str, str]
    body: str

    @property
    def digest(self) -> str:
        """sha256 of the lock's body: the identity images are labelled with."""
        return sha256_hex(self.body)


def read(path: Path) -> Lock:
    if not path.is_file():
        raise PreconditionError(f"lock file not found: {path}", hint=f"run `{REGENERATE}`")
    return parse(path.read_text())


def parse(text: str) -> Lock:
    """Read a pip-tools-format file: header fields, then ``name==version`` with ``--hash`` lines."""
    lines = text.splitlines()
    first = next((n for n, line in enumerate(lines) if line and not line.startswith(("#", " "))), len(lines))
    header = dict(_HEADER.findall("\n".join(lines[:first])))
    pins: dict[str, Pin] = {}
    name = version = ""
    hashes: list[str] = []
    for n, line in enumerate(lines[first:], first + 1):
        stripped = line.strip()
        if stripped.startswith("--hash="):
            hashes.append(stripped.removeprefix("--hash=").rstrip(" \\"))
        elif stripped and not line[0].isspace() and not line.startswith("#"):
            m = _PIN.match(line)
            if not m:
                raise ConfigError(f"line {n} is not a pinned requirement: {line!r}", key="lock",
                                  hint=f"the lock is generated; run `{REGENERATE}`")
            if name:
                pins[name] = Pin(name, version, tuple(hashes))
            name, version, hashes = canonicalize_name(m.group(1)), m.group(2), []
    if name:
        pins[name] = Pin(name, version, tuple(hashes))
    body = "\n".join(lines[first:]) + "\n" if first < len(lines) else ""
    return Lock(pins=pins, header=header, body=body)


def render_pins(pins: list[Pin]) -> str:
    return "".join(pin.render() + "\n" for pin in pins)


def diff_pins(old: dict[str, Pin], new: dict[str, Pin]) -> list[str]:
    changes = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a is None:
            changes.append(f"{name}: added at {b.version}")
        elif b is None:
            changes.append(f"{name}: removed (was {a.version})")
        elif a.version != b.version:
            changes.append(f"{name}: {a.version} -> {b.version}")
        elif set(a.hashes) != set(b.hashes):
            changes.append(f"{name}: {a.version}, hashes changed")
    return changes


def write_if_changed(path: Path, content: str) -> None:
    """Replace the file whole (write aside, then rename), and only when its content changes."""
    if not path.is_file() or path.read_text() != content:
        files.write(path, content)

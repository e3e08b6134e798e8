"""One shared lock for every image, resolved once for the images' interpreter; per-image views.

The resolver is uv (``uv pip compile``): it takes a target Python version and platform, so the
lock is resolved for the base image's CPython (3.11.2 on bookworm), not the host's, and it is
fast enough to re-resolve in seconds. The output is pip-tools' format, with hashes.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from imagekit import proc
from imagekit.config import Config, ImageSpec
from imagekit.errors import CheckFailed, ConfigError, LockConflict, ToolError
from imagekit.images import build_order, lineage

LOCK_NAME = "requirements.txt"
REGENERATE = "imagekit lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_HEADER = re.compile(r"^# (inputs-sha256|inputs|body-sha256|target): (.*)$", re.M)


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
        return _sha256(self.body)


@dataclass(frozen=True)
class LockResult:
    path: str
    resolved: bool  # False: inputs unchanged, no resolver run
    packages: int
    digest: str
    views: dict[str, int]
    changes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def lock_path(cfg: Config) -> Path:
    return cfg.path("lock.dir") / LOCK_NAME


def view_path(cfg: Config, image: str) -> Path:
    return cfg.path("lock.dir") / f"{image}.txt"


def read(path: Path) -> Lock:
    if not path.is_file():
        raise ConfigError(f"lock file not found: {path}", hint=f"run `{REGENERATE}`")
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


def _sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def _requirements(img: ImageSpec) -> list[str]:
    """An image's requirements.in without comments and blank lines: what the resolver sees."""
    if not img.requirements.is_file():
        raise ConfigError(f"requirements file not found: {img.requirements}", key=f"images.{img.name}.requirements",
                          hint="create it (it may be empty) or fix the path in imagekit.toml")
    lines = (line.split(" #", 1)[0].strip() for line in img.requirements.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@dataclass(frozen=True)
class Unit:
    """Images resolved together into one file: the shared images into requirements.txt, or one
    standalone image (``shared = false``, e.g. a test service) into lockfiles/<name>.txt."""
    images: tuple[ImageSpec, ...]
    path: Path
    shared: bool


def units(cfg: Config) -> list[Unit]:
    order = build_order(cfg.images)
    shared = Unit(tuple(i for i in order if i.shared), lock_path(cfg), True)
    return [shared, *(Unit((i,), view_path(cfg, i.name), False) for i in order if not i.shared)]


def input_digests(cfg: Config, unit: Unit | None = None) -> dict[str, str]:
    """Short digests of each image's normalized requirements, plus the target they resolve for."""
    unit = unit or units(cfg)[0]
    digests = {img.name: _sha256("\n".join([img.parent or "", *_requirements(img)]))[:12] for img in unit.images}
    digests["target"] = _sha256(_target(cfg))[:12]
    return digests


def _target(cfg: Config) -> str:
    return (f"CPython {cfg.get('lock.python')} on {cfg.get('lock.platform')}, wheels only,"
            f" index {cfg.get('lock.index_url')}" + (f", find-links {cfg.get('lock.find_links')}"
                                                     if cfg.get('lock.find_links') else ""))


def _inputs_sha(digests: dict[str, str]) -> str:
    return _sha256(" ".join(f"{k}={v}" for k, v in sorted(digests.items())))


def _render(cfg: Config, body: str, digests: dict[str, str], unit: Unit) -> str:
    what = ("the one shared lock for every image" if unit.shared
            else f"the lock of image '{unit.images[0].name}', resolved on its own (shared = false)")
    return (f"# This file is autogenerated by imagekit: {what}.\n"
            f"# Regenerate with:\n#    {REGENERATE}\n"
            f"# target: {_target(cfg)}\n"
            f"# inputs: {' '.join(f'{k}={v}' for k, v in digests.items())}\n"
            f"# inputs-sha256: {_inputs_sha(digests)}\n"
            f"# body-sha256: {_sha256(body)}\n\n{body}")


def find_links_args(cfg: Config) -> list[str]:
    """``--find-links <folder>`` for the private wheels (``lock.find_links``), or nothing; the folder must exist."""
    if not cfg.get("lock.find_links"):
        return []
    folder = cfg.path("lock.find_links")
    if not folder.is_dir():
        raise ConfigError(f"no such folder: {folder}", key="lock.find_links", source=cfg.origins["lock.find_links"],
                          hint="point it at the folder that holds the private wheels, or remove the key")
    return ["--find-links", str(folder)]


def _uv_compile(cfg: Config, files: list[Path], extra: list[str], output: Path | None = None) -> str:
    """``uv pip compile`` for the configured target; returns the output (no header)."""
    from uv import find_uv_bin

    with tempfile.TemporaryDirectory(prefix="imagekit-uv-") as tmp:
        out = output or Path(tmp) / "out.txt"
        cmd = [find_uv_bin(), "pip", "compile", *(str(f.relative_to(cfg.root)) for f in files),
               "-o", str(out), "--quiet", "--no-config", "--no-header",
               "--python-version", cfg.get("lock.python"), "--python-platform", cfg.get("lock.platform"),
               "--only-binary", ":all:", "--index-url", cfg.get("lock.index_url"), *extra]
        cmd += find_links_args(cfg)
        try:
            proc.run(cmd, cwd=cfg.root, env={"UV_NO_PROGRESS": "1"})
        except ToolError as e:
            if "No solution found" in e.output:
                reason = e.output.strip().split("No solution found when resolving dependencies:", 1)[-1]
                raise LockConflict(f"the requirements cannot be satisfied together:\n{reason.strip()}",
                                   hint="relax one of the conflicting requirements in images/*/requirements.in;"
                                        " the existing lock was left untouched") from None
            raise
        return out.read_text().lstrip("\n")


def resolve(cfg: Config, *, upgrade: tuple[str, ...] = (), unit: Unit | None = None) -> tuple[str, Lock]:
    """Resolve every image's requirements at once; return the rendered lock. Writes nothing.

    The committed lock's pins are preferences: unchanged inputs keep their versions, and
    ``upgrade`` names the only packages allowed to move.
    """
    unit = unit or units(cfg)[0]
    digests = input_digests(cfg, unit)
    current = unit.path
    with tempfile.TemporaryDirectory(prefix="imagekit-lock-") as tmp:
        out = Path(tmp) / LOCK_NAME
        if current.is_file():
            shutil.copyfile(current, out)
        extra = ["--generate-hashes", "--annotation-style", "split"]
        for name in upgrade:
            extra += ["--upgrade-package", name]
        body = _uv_compile(cfg, [i.requirements for i in unit.images], extra, output=out)
    text = _render(cfg, body, digests, unit)
    return text, parse(text)


def views(cfg: Config, lock: Lock) -> dict[str, list[Pin]]:
    """Each image's view: the pins its lineage needs beyond what its parent has.

    An image's closure is resolved again with the shared lock as constraints, so it can only
    hold the lock's versions; this is exact where annotations are not (extras such as
    ``ray[serve-grpc]`` pull packages that ``# via ray`` would wrongly give to every image).
    """
    with tempfile.TemporaryDirectory(prefix="imagekit-views-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("".join(f"{p.name}=={p.version}\n" for p in lock.pins.values()))
        closures: dict[str, set[str]] = {}
        for img in units(cfg)[0].images:
            files = [i.requirements for i in lineage(cfg.images, img.name)]
            text = _uv_compile(cfg, files, ["-c", str(constraints), "--no-annotate"])
            closures[img.name] = set(parse(text).pins)
    result = {}
    for img in units(cfg)[0].images:
        inherited = closures[img.parent] if img.parent else set()
        result[img.name] = [lock.pins[n] for n in sorted(closures[img.name] - inherited)]
    return result


def read_views(cfg: Config, lock: Lock) -> dict[str, list[Pin]]:
    """The committed views, checked against the lock: same pins and hashes, each pin in exactly
    one image of a lineage, and together they cover the lock. Raise CheckFailed otherwise."""
    problems, result = [], {}
    for unit in units(cfg)[1:]:
        own = read(unit.path)
        problems += _up_to_date(cfg, unit, own)
        result[unit.images[0].name] = list(own.pins.values())
    for img in units(cfg)[0].images:
        path = view_path(cfg, img.name)
        if not path.is_file():
            problems.append(f"{path.relative_to(cfg.root)} is missing")
            continue
        pins = list(parse(path.read_text()).pins.values())
        for pin in pins:
            if lock.pins.get(pin.name) != pin:
                problems.append(f"{path.relative_to(cfg.root)}: {pin.name}=={pin.version} differs from the shared lock")
        if path.read_text() != render_view(cfg, img, pins):
            problems.append(f"{path.relative_to(cfg.root)} was edited by hand")
        result[img.name] = pins
    covered = [p.name for img in units(cfg)[0].images for p in result.get(img.name, [])]
    for name in sorted(set(lock.pins) - set(covered)):
        problems.append(f"{name} is in the shared lock but in no image's view")
    for img in units(cfg)[0].images:
        if img.name in result:
            seen = [p.name for i in lineage(cfg.images, img.name) for p in result.get(i.name, [])]
            problems += [f"{n} is in more than one view of {img.name}'s lineage"
                         for n in sorted({n for n in seen if seen.count(n) > 1})]
    if problems:
        raise CheckFailed("the per-image views do not match the shared lock", differences=problems,
                          hint=f"run `{REGENERATE}`")
    return result


def render_view(cfg: Config, img: ImageSpec, pins: list[Pin]) -> str:
    on = f"on top of image '{img.parent}'" if img.parent else "on the OS base image"
    head = (f"# This file is autogenerated by imagekit: the view of {LOCK_NAME} for image '{img.name}',\n"
            f"# the pins it installs {on}. Same versions and hashes as the shared lock.\n"
            f"# Regenerate with:\n#    {REGENERATE}\n\n")
    return head + "".join(pin.render() + "\n" for pin in pins)


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


def _up_to_date(cfg: Config, unit: Unit, lock: Lock) -> list[str]:
    """What makes ``lock`` stale against the current inputs (empty: nothing)."""
    problems = []
    if lock.header.get("body-sha256") != _sha256(lock.body):
        problems.append(f"{unit.path.name} was edited by hand (its body no longer matches body-sha256)")
    digests = input_digests(cfg, unit)
    if lock.header.get("inputs-sha256") != _inputs_sha(digests):
        recorded = dict(kv.split("=", 1) for kv in lock.header.get("inputs", "").split() if "=" in kv)
        for name, digest in digests.items():
            if recorded.get(name) != digest:
                problems.append(f"the resolution target of {unit.path.name} changed" if name == "target" else
                                f"{cfg.image(name).requirements.relative_to(cfg.root)} changed since the lock was made")
    return problems


def _write(path: Path, content: str) -> None:
    """Replace the file whole (write aside, then rename), and only when its content changes."""
    if not path.is_file() or path.read_text() != content:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(content)
        tmp.replace(path)


def _resolve_standalone(cfg: Config, unit: Unit, upgrade: tuple[str, ...]) -> tuple[str | None, Lock]:
    """(the new text, or None when the file is current; the lock in effect). Writes nothing."""
    old = parse(unit.path.read_text()) if unit.path.is_file() else None
    moving = tuple(n for n in upgrade if old and canonicalize_name(n) in old.pins)
    if old is not None and not moving and not _up_to_date(cfg, unit, old):
        return None, old
    return resolve(cfg, upgrade=moving, unit=unit)


def lock(cfg: Config, *, upgrade: tuple[str, ...] = ()) -> LockResult:
    """Bring lockfiles/ up to date. Runs the resolver only when inputs changed or on upgrade."""
    started = time.monotonic()
    shared, *standalone = units(cfg)
    path = shared.path
    old = parse(path.read_text()) if path.is_file() else None
    known = set(old.pins) if old else set()
    for unit in standalone:
        known |= set(parse(unit.path.read_text()).pins) if unit.path.is_file() else set()
    unknown = [n for n in upgrade if canonicalize_name(n) not in known]
    if unknown and known:
        raise ConfigError(f"not in the lock: {', '.join(unknown)}", key="--upgrade-package",
                          hint="name a package that lockfiles/ pin")
    path.parent.mkdir(parents=True, exist_ok=True)
    own = [_resolve_standalone(cfg, unit, upgrade) for unit in standalone]
    moving = tuple(n for n in upgrade if old and canonicalize_name(n) in old.pins)
    text, new = (path.read_text(), old) if old is not None and not moving and not _up_to_date(cfg, shared, old) \
        else resolve(cfg, upgrade=moving, unit=shared)
    try:
        derived = read_views(cfg, new) if new is old else None
    except CheckFailed:
        derived = None  # views only: derive them again from the same lock
    if derived is None:
        derived = views(cfg, new)  # before writing anything: a failure leaves lockfiles/ as they were
        for name, pins in derived.items():
            _write(view_path(cfg, name), render_view(cfg, cfg.image(name), pins))
    _write(path, text)
    for unit, (own_text, own_lock) in zip(standalone, own):
        if own_text is not None:
            _write(unit.path, own_text)
        derived[unit.images[0].name] = list(own_lock.pins.values())
    return LockResult(path=str(path), resolved=new is not old or any(t is not None for t, _ in own),
                      packages=len(new.pins), digest=new.digest, views={n: len(p) for n, p in derived.items()},
                      changes=diff_pins(old.pins, new.pins) if old else [], seconds=time.monotonic() - started)


def check(cfg: Config, *, name_changes: bool = True) -> LockResult:
    """Raise CheckFailed, naming each difference, when lockfiles/ no longer match the inputs.

    With ``name_changes``, a stale lock is re-resolved (in a temporary folder) to name the
    packages that would change; without it the check is offline and instant.
    """
    started = time.monotonic()
    problems = []
    for unit in units(cfg):
        old = read(unit.path)
        stale = _up_to_date(cfg, unit, old)
        if stale and name_changes:
            try:
                _, new = resolve(cfg, unit=unit)
                stale += [f"{unit.path.name} would change: {c}" for c in diff_pins(old.pins, new.pins)]
            except ToolError as e:
                stale.append(f"could not re-resolve to name the package changes: {e.message.splitlines()[0]}")
        problems += stale
    path = lock_path(cfg)
    if problems:
        raise CheckFailed(f"{path.parent.relative_to(cfg.root)}/ is out of date", differences=problems,
                          hint=f"run `{REGENERATE}` and commit lockfiles/")
    old = read(path)
    current = read_views(cfg, old)
    return LockResult(path=str(path), resolved=False, packages=len(old.pins), digest=old.digest,
                      views={n: len(p) for n, p in current.items()}, seconds=time.monotonic() - started)

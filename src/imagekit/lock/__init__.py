"""One shared lock for every image, resolved once for the images' interpreter; per-image views.

    format.py    the pip-tools file format (Pin, Lock, parse, render)
    resolver.py  uv (default, on the host) and pip-tools (inside the OS image)
    views.py     what each image installs beyond its parent
    (here)       which files exist, when they are stale, and the flows `lock` and `lock --check`
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from imagekit import redact
from imagekit.config import Config
from imagekit.digests import sha256_hex
from imagekit.errors import CheckFailed, ConfigError, LockConflict, ToolError, UsageError
from imagekit.images import ImageSpec, build_order
from imagekit.lock import resolver, views
from imagekit.lock.format import REGENERATE, Lock, Pin, diff_pins, parse, read, render_pins, write_if_changed
from imagekit.lock.views import LOCK_NAME, Views

__all__ = ["Lock", "Pin", "Views", "LockFile", "LockResult", "parse", "read", "lock", "check", "load_views",
           "lock_path", "view_path", "target", "shared_lock", "pip_tools_check", "render_pins"]


@dataclass(frozen=True)
class LockFile:
    """Images resolved together into one file: the shared images into requirements.txt, or one
    standalone image (``shared = false``, e.g. a test service) into lockfiles/<name>.txt."""
    images: tuple[ImageSpec, ...]
    path: Path
    shared: bool


@dataclass(frozen=True)
class LockFiles:
    shared: LockFile
    standalone: tuple[LockFile, ...]

    def all(self) -> tuple[LockFile, ...]:
        return (self.shared, *self.standalone)


@dataclass(frozen=True)
class LockResult:
    path: str
    resolved: bool  # False: inputs unchanged, no resolver run
    packages: int
    digest: str
    views: dict[str, int]
    changes: list[str] = field(default_factory=list)
    resolver: str = "uv"
    seconds: float = 0.0


Compile = Callable[[LockFile, Path | None, tuple[str, ...]], str]  # (file, seed, upgrade) -> body


def lock_path(cfg: Config) -> Path:
    return cfg.path(cfg.lock.dir) / LOCK_NAME


def view_path(cfg: Config, image: str) -> Path:
    return cfg.path(cfg.lock.dir) / f"{image}.txt"


def files(cfg: Config) -> LockFiles:
    order = build_order(cfg.images)
    return LockFiles(shared=LockFile(tuple(i for i in order if i.shared), lock_path(cfg), True),
                     standalone=tuple(LockFile((i,), view_path(cfg, i.name), False) for i in order if not i.shared))


def target(cfg: Config) -> resolver.Target:
    s = cfg.lock
    return resolver.Target(python=s.python, platform=s.platform,
                           index_url=resolver.index_url(s.index_url, s.index_username, s.index_password),
                           find_links=resolver.check_find_links(s.find_links, cfg.path(s.find_links),
                                                                cfg.origins.get("lock.find_links", "")),
                           find_links_setting=s.find_links)


def shared_lock(cfg: Config) -> Lock:
    return read(lock_path(cfg))


def load_views(cfg: Config, lk: Lock | None = None) -> Views:
    """The committed views of every image (standalone images: their own lock), checked."""
    lk = lk or shared_lock(cfg)
    fs = files(cfg)
    own = {name: tuple(pins) for name, pins in _checked_views(cfg, fs, lk).items()}
    for f in fs.standalone:
        standalone = read(f.path)
        problems = _stale(cfg, f, standalone)
        if problems:
            raise CheckFailed(f"{f.path.name} is out of date", differences=problems, hint=f"run `{REGENERATE}`")
        own[f.images[0].name] = tuple(standalone.pins.values())
    return Views(own=own, images=cfg.images)


def _checked_views(cfg: Config, fs: LockFiles, lk: Lock) -> dict[str, list[Pin]]:
    return views.check(cfg.root, cfg.images, fs.shared.images, lk,
                       {i.name: view_path(cfg, i.name) for i in fs.shared.images})


def _requirements(img: ImageSpec) -> list[str]:
    """An image's requirements.in without comments and blank lines: what the resolver sees."""
    if not img.requirements.is_file():
        raise ConfigError(f"requirements file not found: {img.requirements}", key=f"images.{img.name}.requirements",
                          hint="create it (it may be empty) or fix the path in imagekit.toml")
    lines = (line.split(" #", 1)[0].strip() for line in img.requirements.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def input_digests(cfg: Config, f: LockFile) -> dict[str, str]:
    """Short digests of each image's normalized requirements, plus the target they resolve for."""
    digests = {img.name: sha256_hex("\n".join([img.parent or "", *_requirements(img)]))[:12] for img in f.images}
    digests["target"] = sha256_hex(target(cfg).describe())[:12]
    return digests


def _inputs_sha(digests: dict[str, str]) -> str:
    return sha256_hex(" ".join(f"{k}={v}" for k, v in sorted(digests.items())))


def _render(cfg: Config, body: str, f: LockFile, resolver_name: str) -> str:
    digests = input_digests(cfg, f)
    what = ("the one shared lock for every image" if f.shared
            else f"the lock of image '{f.images[0].name}', resolved on its own (shared = false)")
    return redact.text(f"# This file is autogenerated by imagekit: {what}.\n"
                       f"# Regenerate with:\n#    {REGENERATE}\n"
                       f"# target: {target(cfg).describe()}\n"
                       f"# resolver: {resolver_name}\n"
                       f"# inputs: {' '.join(f'{k}={v}' for k, v in digests.items())}\n"
                       f"# inputs-sha256: {_inputs_sha(digests)}\n"
                       f"# body-sha256: {sha256_hex(body)}\n\n") + body  # the pins and hashes as resolved


def _stale(cfg: Config, f: LockFile, lk: Lock) -> list[str]:
    """What makes ``lk`` stale against the current inputs (empty: nothing)."""
    problems = []
    if lk.header.get("body-sha256") != sha256_hex(lk.body):
        problems.append(f"{f.path.name} was edited by hand (its body no longer matches body-sha256)")
    digests = input_digests(cfg, f)
    if lk.header.get("inputs-sha256") != _inputs_sha(digests):
        recorded = dict(kv.split("=", 1) for kv in lk.header.get("inputs", "").split() if "=" in kv)
        for name, digest in digests.items():
            if recorded.get(name) != digest:
                problems.append(f"the resolution target of {f.path.name} changed" if name == "target" else
                                f"{cfg.image(name).requirements.relative_to(cfg.root)} changed since the lock was made")
    return problems


def compiler(cfg: Config, name: str | None = None) -> tuple[str, Compile]:
    """The resolver ``name`` (default: lock.resolver) as a function (file, seed, upgrade) -> body."""
    name = name or cfg.lock.resolver
    tgt = target(cfg)
    if name == "uv":
        def uv(f: LockFile, seed: Path | None, upgrade: tuple[str, ...]) -> str:
            with tempfile.TemporaryDirectory(prefix="imagekit-lock-") as tmp:
                out = Path(tmp) / LOCK_NAME
                if seed is not None and seed.is_file():
                    shutil.copyfile(seed, out)
                extra = ["--generate-hashes", "--annotation-style", "split",
                         *(a for n in upgrade for a in ("--upgrade-package", n))]
                return resolver.uv_compile(cfg.root, tgt, [i.requirements for i in f.images], extra, output=out)
        return "uv", uv
    if name == "pip-tools":
        from imagekit import osimage
        from imagekit.engine import Engine

        def pip_tools(f: LockFile, seed: Path | None, upgrade: tuple[str, ...]) -> str:
            engine = Engine.connect()
            ref = osimage.ensure(cfg, engine).ref
            return resolver.pip_tools_compile(engine, ref, cfg.root, tgt, [i.requirements for i in f.images],
                                              seed=seed, upgrade=upgrade, cache=cfg.cache_dir)
        return "pip-tools", pip_tools
    raise UsageError(f"unknown resolver {name!r}", option="--resolver", hint="use uv or pip-tools")


def _resolve(cfg: Config, f: LockFile, compile_: tuple[str, Compile], upgrade: tuple[str, ...] = ()) -> tuple[str, Lock]:
    """Resolve the file's images at once; the committed pins are preferences. Writes nothing."""
    name, fn = compile_
    text = _render(cfg, fn(f, f.path, upgrade), f, name)
    return text, parse(text)


def lock(cfg: Config, *, upgrade: tuple[str, ...] = (), resolver_name: str | None = None) -> LockResult:
    """Bring lockfiles/ up to date. Runs the resolver only when inputs changed or on upgrade.

    Everything is resolved before anything is written: a failure leaves lockfiles/ as they were.
    """
    started = time.monotonic()
    fs = files(cfg)
    compile_ = compiler(cfg, resolver_name)
    current = {f.path: parse(f.path.read_text()) for f in fs.all() if f.path.is_file()}
    known = {n for lk in current.values() for n in lk.pins}
    unknown = [n for n in upgrade if canonicalize_name(n) not in known]
    if unknown and known:
        raise UsageError(f"not in the lock: {', '.join(unknown)}", option="--upgrade-package",
                         hint="name a package that lockfiles/ pin")
    pending: dict[Path, str] = {}
    effective: dict[Path, Lock] = {}
    for f in fs.all():
        old = current.get(f.path)
        moving = tuple(n for n in upgrade if old and canonicalize_name(n) in old.pins)
        if old is not None and not moving and not _stale(cfg, f, old):
            effective[f.path] = old
            continue
        pending[f.path], effective[f.path] = _resolve(cfg, f, compile_, moving)
    new = effective[fs.shared.path]
    try:
        derived = _checked_views(cfg, fs, new) if fs.shared.path not in pending else None
    except CheckFailed:
        derived = None  # views only: derive them again from the same lock
    if derived is None:
        derived = views.derive(cfg.root, target(cfg), cfg.images, fs.shared.images, new)
        for img in fs.shared.images:
            pending[view_path(cfg, img.name)] = views.render(img, derived[img.name])
    fs.shared.path.parent.mkdir(parents=True, exist_ok=True)
    for path, text in pending.items():
        write_if_changed(path, text)
    counts = {n: len(p) for n, p in derived.items()} | {f.images[0].name: len(effective[f.path].pins)
                                                       for f in fs.standalone}
    old = current.get(fs.shared.path)
    return LockResult(path=str(fs.shared.path), resolved=any(f.path in pending for f in fs.all()),
                      packages=len(new.pins), digest=new.digest, views=counts,
                      changes=diff_pins(old.pins, new.pins) if old else [], resolver=compile_[0],
                      seconds=round(time.monotonic() - started, 2))


def check(cfg: Config, *, name_changes: bool = True) -> LockResult:
    """Raise CheckFailed, naming each difference, when lockfiles/ no longer match the inputs.

    With ``name_changes``, a stale lock is re-resolved (in a temporary folder) to name the
    packages that would change; without it the check is offline and instant.
    """
    started = time.monotonic()
    fs = files(cfg)
    problems = []
    for f in fs.all():
        old = read(f.path)
        stale = _stale(cfg, f, old)
        if stale and name_changes:
            try:
                _, new = _resolve(cfg, f, compiler(cfg))  # the configured resolver (lock.resolver)
                stale += [f"{f.path.name} would change: {c}" for c in diff_pins(old.pins, new.pins)]
            except ToolError as e:
                stale.append(f"could not re-resolve to name the package changes: {e.message.splitlines()[0]}")
        problems += stale
    if problems:
        raise CheckFailed(f"{fs.shared.path.parent.relative_to(cfg.root)}/ is out of date", differences=problems,
                          hint=f"run `{REGENERATE}` and commit lockfiles/")
    lk = read(fs.shared.path)
    current = load_views(cfg, lk)
    return LockResult(path=str(fs.shared.path), resolved=False, packages=len(lk.pins), digest=lk.digest,
                      views=current.counts(), resolver=lk.header.get("resolver", "uv"),
                      seconds=round(time.monotonic() - started, 2))


def pip_tools_check(cfg: Config) -> LockResult:
    """``lock --check --resolver pip-tools``: pip-compile, given the committed lock, must accept
    it unchanged (same packages, versions and hashes). CheckFailed names each difference."""
    result = check(cfg, name_changes=False)
    started = time.monotonic()
    problems = []
    for f in files(cfg).all():
        old = read(f.path)
        try:
            _, accepted = _resolve(cfg, f, compiler(cfg, "pip-tools"))
        except (ToolError, LockConflict) as e:  # pip-compile refuses a pin outright (one its Python cannot install)
            said = (getattr(e, "output", "") or e.message).strip().splitlines()
            problems.append(f"{f.path.name}: pip-compile fails on it: {said[-1]}")
            continue
        problems += [f"{f.path.name}: pip-compile would change {c}" for c in diff_pins(old.pins, accepted.pins)]
    if problems:
        raise CheckFailed("pip-compile does not accept the committed lock unchanged", differences=problems,
                          hint=f"run `{REGENERATE} --resolver pip-tools` to let pip-compile resolve it")
    return LockResult(**{**result.__dict__, "resolver": "pip-tools",
                         "seconds": round(result.seconds + time.monotonic() - started, 2)})

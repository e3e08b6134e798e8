"""Static alignment: what is installed inside each image, against each other and the lock."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from packaging.utils import canonicalize_name

from imagekit import containers, lock
from imagekit.build import IMAGE_LABEL
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.errors import PreconditionError

VENV_TOOLS = {"setuptools"}  # a venv's own where one is made with pip (older images), not locked
# Run inside the image: its Python, its distributions, and every installed file whose content is not
# what the distribution's RECORD lists (sha256): a file patched under the same version.
FACTS = """
import base64, hashlib, json, platform, importlib.metadata as m
packages, changed = {}, []
for d in m.distributions():
    packages[d.metadata['Name']] = d.version
    for f in d.files or []:
        if f.hash is None or f.hash.mode != 'sha256':
            continue
        try:
            with open(f.locate(), 'rb') as fh:
                digest = base64.urlsafe_b64encode(hashlib.sha256(fh.read()).digest()).rstrip(b'=').decode()
        except OSError:
            digest = None
        if digest != f.hash.value:
            changed.append([d.metadata['Name'], str(f), 'missing' if digest is None else 'changed'])
print(json.dumps({'python': platform.python_version(), 'packages': packages, 'changed': changed}))
"""


@dataclass(frozen=True)
class ImageFacts:
    ref: str
    name: str  # which image of imagekit.toml it claims to be (its label)
    python: str
    packages: dict[str, str]
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # (distribution, file, changed|missing)


@dataclass(frozen=True)
class StaticReport:
    notebook: ImageFacts
    ray: ImageFacts
    differences: list[str]
    others: list[ImageFacts] = field(default_factory=list)  # the rest of the verified set (verify.images)

    @property
    def ok(self) -> bool:
        return not self.differences


def inspect(engine: Engine, ref: str) -> ImageFacts:
    """Ask the image itself (its interpreter, its installed distributions), with the network off."""
    info = engine.image(ref)
    if info is None:
        raise PreconditionError(f"image {ref} is not in the engine",
                                hint="run `imagekit build`, or pass an image that exists")
    name = info.labels.get(IMAGE_LABEL, "")
    data = json.loads(containers.run(engine, ref, ["python", "-c", FACTS]).strip().splitlines()[-1])
    packages = {canonicalize_name(k): v for k, v in data["packages"].items() if canonicalize_name(k) not in VENV_TOOLS}
    changed = [(canonicalize_name(d), f, how) for d, f, how in data["changed"]]
    return ImageFacts(ref=ref, name=name, python=data["python"], packages=packages, changed=changed)


def compare(cfg: Config, lk: lock.Lock, notebook: ImageFacts, ray: ImageFacts,
            others: list[ImageFacts] | None = None) -> StaticReport:
    """Each image against its lock view and the lock's Python; the notebook against the Ray image
    (and every other image of the verified set) for each package both hold."""
    others = others or []
    views = lock.load_views(cfg, lk)
    target = cfg.lock.python
    diffs = []
    for facts in (notebook, ray, *others):
        if facts.python != target:
            diffs.append(f"python: {facts.name or facts.ref} has {facts.python}, the lock targets {target}")
        for dist, path, how in facts.changed:
            diffs.append(f"{dist}: {path} in {facts.name or facts.ref} is {how} since install (not what its RECORD "
                         f"lists, same version {facts.packages.get(dist, '?')})")
        if facts.name not in views.own:
            diffs.append(f"{facts.ref} carries no imagekit image label; cannot tell which lock view it should hold")
            continue
        expected = views.versions(facts.name)
        for name in sorted(expected.keys() | facts.packages.keys()):
            want, got = expected.get(name), facts.packages.get(name)
            if got is None:
                diffs.append(f"{name}: missing in {facts.name} (lock {want})")
            elif want is None:
                diffs.append(f"{name}: {got} in {facts.name} is not in its lock view")
            elif got != want:
                diffs.append(f"{name}: {facts.name} has {got}, lock {want}")
    for other, role in [(ray, "ray"), *((o, o.name or o.ref) for o in others)]:
        if notebook.python != other.python:
            diffs.append(f"python: notebook {notebook.python}, {role} {other.python}")
        for name in sorted(notebook.packages.keys() & other.packages.keys()):
            if notebook.packages[name] != other.packages[name]:
                diffs.append(f"{name}: notebook {notebook.packages[name]}, {role} {other.packages[name]}, "
                             f"lock {lk.pins[name].version if name in lk.pins else 'none'}")
    return StaticReport(notebook=notebook, ray=ray, differences=diffs, others=others)

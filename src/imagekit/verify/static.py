"""Static alignment: what is installed inside each image (facts.py), against each other and the lock."""
from __future__ import annotations

from dataclasses import dataclass, field

from imagekit import lock
from imagekit.config import Config
from imagekit.facts import ImageFacts


@dataclass(frozen=True)
class StaticReport:
    notebook: ImageFacts
    ray: ImageFacts
    differences: list[str]
    others: list[ImageFacts] = field(default_factory=list)  # the rest of the verified set (verify.images)
    notes: list[str] = field(default_factory=list)  # listed, not failures: a team image against the lock, BLAS

    @property
    def ok(self) -> bool:
        return not self.differences


def python_pair(a: str, pa: str, b: str, pb: str) -> str:
    """Two Pythons that differ, with what it breaks between a notebook and a Ray cluster."""
    if pa.split(".")[:2] != pb.split(".")[:2]:
        return (f"python: {a} {pa}, {b} {pb}: different minors, so neither a driver that joins the Ray cluster "
                f"(same patch) nor Ray Client (same minor) can connect; take both images at the same Python patch")
    return (f"python: {a} {pa}, {b} {pb}: a driver that joins the Ray cluster must match Python to the patch "
            f"(Ray Client: the minor); take both images at the same Python patch")


def compare(cfg: Config, lk: lock.Lock, notebook: ImageFacts, ray: ImageFacts,
            others: list[ImageFacts] | None = None) -> StaticReport:
    """Each image against the lock, the notebook against the Ray image (and every other image of the
    verified set) for Python and each package both hold, and every installed file against its RECORD.
    An image of imagekit's (its label names an image of this config) is held to its lock view and the
    lock's Python (one it built on a vendor image may also hold the vendor's other distributions: notes);
    any other image (a team's own) is judged against its partner, and its differences from the lock's
    shared view are listed as notes."""
    others = others or []
    views = lock.load_views(cfg, lk)
    shared = views.versions(cfg.verify.server)
    shared = {n: v for n, v in views.versions(cfg.verify.trainer).items() if shared.get(n) == v}
    target = cfg.lock.python
    diffs, notes = [], []
    for facts in (notebook, ray, *others):
        who = facts.name or facts.ref
        for dist, path, how in facts.changed:
            diffs.append(f"{dist}: {path} in {who} is {how} since install (not what its RECORD "
                         f"lists, same version {facts.packages.get(dist, '?')})")
        if facts.name not in views.own:  # a team's image: listed, not judged, against the lock
            if facts.python != target:
                notes.append(f"python: {who} has {facts.python}, the lock targets {target}")
            notes.extend(f"{name}: {who} has {facts.packages.get(name) or 'nothing'}, the lock's shared view {want}"
                         for name, want in sorted(shared.items()) if facts.packages.get(name) != want)
            continue
        if facts.python != target:
            diffs.append(f"python: {who} has {facts.python}, the lock targets {target}")
        expected = views.versions(facts.name)
        for name in sorted(expected.keys() | facts.packages.keys()):
            want, got = expected.get(name), facts.packages.get(name)
            if got is None:
                diffs.append(f"{name}: missing in {facts.name} (lock {want})")
            elif want is None and facts.base:  # built by imagekit on a vendor image: the vendor's, kept
                notes.append(f"{name}: {got} in {facts.name}, kept from its vendor base {facts.base}")
            elif want is None:
                diffs.append(f"{name}: {got} in {facts.name} is not in its lock view")
            elif got != want:
                diffs.append(f"{name}: {facts.name} has {got}, lock {want}")
    for other, role in [(ray, "ray"), *((o, o.name or o.ref) for o in others)]:
        if notebook.python != other.python:
            diffs.append(python_pair("notebook", notebook.python, role, other.python))
        for name in sorted(notebook.packages.keys() & other.packages.keys()):
            if notebook.packages[name] != other.packages[name]:
                diffs.append(f"{name}: notebook {notebook.packages[name]}, {role} {other.packages[name]}, "
                             f"lock {lk.pins[name].version if name in lk.pins else 'none'}")
        if notebook.blas is not None and other.blas is not None and notebook.blas != other.blas:
            notes.append(f"blas (warning): notebook {', '.join(notebook.blas) or 'none'}, {role} "
                         f"{', '.join(other.blas) or 'none'}: a model may predict differently in the last bits; "
                         f"the round trip's comparison decides")
    return StaticReport(notebook=notebook, ray=ray, differences=diffs, others=others, notes=notes)

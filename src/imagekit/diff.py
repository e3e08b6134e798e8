"""`imagekit diff`: what differs between two images, or between two environments' images, ranked by
the risk for unpickling. An image of imagekit.toml named by environment (``[ENV/]IMAGE``) is read from the
registry (the labels imagekit builds into each image); any other image reference (a team's image,
local or pulled) is read from inside the image, as the static check reads it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from imagekit import attest, build, facts, inventory, osimage
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.errors import PreconditionError, UsageError
from imagekit.images import Environment
from imagekit.inventory import MOVING_TAG
from imagekit.oci import Reference
from imagekit.registry import Registry
from imagekit.verify.policy import verified_set

# What a pickle is made of, most telling first: the interpreter, then the libraries whose classes
# and array layouts models carry; the team's private model packages come right after.
UNPICKLING = ("numpy", "scikit-learn", "cloudpickle", "category-encoders", "pandas", "scipy", "joblib")


@dataclass(frozen=True)
class Side:
    ref: str  # host/project/repository@digest
    python: str
    lock: str
    packages: dict[str, str] = field(repr=False)


@dataclass(frozen=True)
class Change:
    name: str  # a distribution, or "python"
    a: str  # its version in A ("" when absent)
    b: str
    kind: str  # added, removed, changed
    risk: str  # high or low
    why: str


@dataclass(frozen=True)
class ImageDiff:
    image: str
    a: str
    b: str
    same_digest: bool
    python: tuple[str, str]
    lock: tuple[str, str]
    changes: list[Change]


def _side(cfg: Config, text: str, engine: Callable[[], Engine | None]) -> tuple[str, Side]:
    """``[ENV/]IMAGE[:TAG|@DIGEST]`` (ENV: an environment's name or project, default the first; default tag
    `current`) -> (image name, what the registry says about it); an image in the engine, or any other
    reference (pulled) -> (the reference, what the image itself holds)."""
    ref = Reference.parse(text)
    local = engine()
    if local is not None and local.image(text):
        return text, inside(local, text)
    env_name, _, image_name = ref.repository.rpartition("/")
    env = _named(cfg, env_name) if env_name else (cfg.environments[0] if cfg.environments else None)
    img = next((i for i in cfg.images if image_name in (i.name, i.repository)), None)
    ours = env is not None and (not ref.registry or ref.registry == inventory.registry_for(cfg, env).host)
    if ours and img is not None:
        return img.name, labelled(inventory.registry_for(cfg, env), inventory.repo(cfg, env, img.name),
                               ref.digest or ref.tag or MOVING_TAG)
    if ours and env_name:
        raise UsageError(f"{text!r}: no image {image_name!r} in imagekit.toml",
                         hint=f"write [ENV/]IMAGE[:TAG|@DIGEST] with IMAGE one of {', '.join(i.name for i in cfg.images)}, "
                              f"or an image reference the engine has or can pull")
    if local is None:
        raise PreconditionError(f"{text!r} is no image of imagekit.toml, and no Docker engine answers to read it from",
                                hint="start the engine (`make dev-up`), or write [ENV/]IMAGE")
    inventory.present(cfg, local, text)
    return text, inside(local, text)


def inside(engine: Engine, ref: str) -> Side:
    """What ``ref`` holds, asked of its own Python (as the static check asks it)."""
    f, info = facts.inspect(engine, ref), engine.image(ref)
    return Side(ref=f"{ref.split('@')[0]}@{info.id}", python=f.python, lock=info.labels.get(build.LOCK_LABEL, ""),
                packages=f.packages)


def _named(cfg: Config, name: str) -> Environment | None:
    return next((e for e in cfg.environments if name in (e.name, e.project)), None)


def _environment(cfg: Config, name: str) -> Environment:
    found = _named(cfg, name)
    if found is None:
        raise UsageError(f"no environment or project {name!r}",
                         hint=f"environments: {', '.join(e.name for e in cfg.environments)}")
    return found


def labelled(reg: Registry, repo: str, ref: str) -> Side:
    """What the registry's labels say an image of imagekit's holds."""
    manifest = reg.manifest(repo, ref)
    if manifest is None:
        raise PreconditionError(f"{reg.host}/{repo}:{ref} does not exist", hint="push or promote it first")
    labels = inventory.labels(reg, repo, manifest)
    if inventory.PACKAGES_LABEL not in labels:
        raise PreconditionError(f"{reg.host}/{repo}@{manifest.digest} has no {inventory.PACKAGES_LABEL} label",
                                hint=f"it was not built by this imagekit (or by an older one): diff it by its image "
                                     f"reference ({reg.host}/{repo}:TAG), which is read from inside the image")
    return Side(ref=f"{reg.host}/{repo}@{manifest.digest}", python=labels.get(osimage.PYTHON_LABEL, ""),
                lock=labels.get(build.LOCK_LABEL, ""), packages=inventory.packages(labels))


def _runs(cfg: Config, env: Environment) -> dict[str, Side]:
    """What ``env`` runs of each verified image: `current`, or where nothing was promoted (the first
    environment) what `promote --all` would move from it: its newest verified set."""
    reg = inventory.registry_for(cfg, env)
    members = verified_set(cfg)
    held = inventory.runs(cfg, env, members, attest.trusted_key(cfg))
    if set(held) != set(members):
        raise PreconditionError(f"{env.name} runs no {', '.join(sorted(set(members) - set(held)))} under {MOVING_TAG} "
                                f"and holds no set verified together",
                                hint="push and verify the images (`imagekit verify-compat`), or diff two images")
    return {n: labelled(reg, h.path, h.digest) for n, h in held.items()}


def private_packages(cfg: Config) -> set[str]:
    """The distributions of the private index (lock.find_links): the team's own model code."""
    folder = Path(cfg.path(cfg.lock.find_links)) if cfg.lock.find_links else None
    if not folder or not folder.is_dir():
        return set()
    return {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in folder.rglob("*.whl")}


def _rank(name: str, private: set[str]) -> tuple[int, str, str]:
    if name == "python":
        return 0, "high", "the interpreter: Ray Client refuses another patch, pickled code objects need the same"
    if name in UNPICKLING:
        return 1 + UNPICKLING.index(name), "high", "models pickle its classes and array layouts"
    if name in private:
        return 1 + len(UNPICKLING), "high", "the team's model classes: pickles name them"
    return 2 + len(UNPICKLING), "low", "not referenced by typical model pickles"


def compare(image: str, a: Side, b: Side, private: set[str]) -> ImageDiff:
    changes = []
    if a.python != b.python:
        changes.append(("python", a.python, b.python))
    for name in sorted(set(a.packages) | set(b.packages)):
        if a.packages.get(name) != b.packages.get(name):
            changes.append((name, a.packages.get(name, ""), b.packages.get(name, "")))
    order = sorted((_rank(name, private), name, old, new) for name, old, new in changes)
    ranked = [Change(name=name, a=old, b=new, kind="added" if not old else "removed" if not new else "changed",
                     risk=risk, why=why) for (_, risk, why), name, old, new in order]
    return ImageDiff(image=image, a=a.ref, b=b.ref, same_digest=a.ref.split("@")[1] == b.ref.split("@")[1],
                     python=(a.python, b.python), lock=(a.lock, b.lock), changes=ranked)


def diff(cfg: Config, refs: list[str], envs: list[str],
         engine: Callable[[], Engine | None] = lambda: None) -> list[ImageDiff]:
    """Two references (``diff A B``), or two environments (``--env A --env B``: every image of the
    verified set as each environment runs it). ``engine``: the Docker engine, for image references
    (None: none answers)."""
    private = private_packages(cfg)
    if len(refs) == 2 and not envs:
        (name_a, a), (name_b, b) = _side(cfg, refs[0], engine), _side(cfg, refs[1], engine)
        return [compare(name_a if name_a == name_b else f"{name_a} / {name_b}", a, b, private)]
    if len(envs) == 2 and not refs:
        a_env, b_env = (_environment(cfg, e) for e in envs)
        a, b = _runs(cfg, a_env), _runs(cfg, b_env)
        return [compare(name, a[name], b[name], private) for name in a]
    raise UsageError("give two references (imagekit diff A B) or two environments (--env A --env B)",
                     option="--env", hint="e.g. imagekit diff desa/ray prod/ray, or imagekit diff --env desa --env prod")

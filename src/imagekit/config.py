"""imagekit.toml: the model, and the precedence flag > IMAGEKIT_* variable > file > default."""
from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagekit.errors import ConfigError

FILENAME = "imagekit.toml"

# Scalar sections: section -> key -> (type, default). Each key is also IMAGEKIT_<SECTION>_<KEY>.
SCALARS: dict[str, dict[str, tuple[type, Any]]] = {
    "project": {"org": (str, "org"), "version": (int, 1), "source": (str, "")},
    "registry": {"url": (str, "127.0.0.1:5000"), "insecure": (bool, False),
                 "ca_bundle": (str, ""), "username": (str, ""), "password": (str, "")},
    "lock": {"python": (str, "3.11.2"), "platform": (str, "x86_64-manylinux_2_36"),
             "index_url": (str, "https://pypi.org/simple"), "find_links": (str, ""),
             "dir": (str, "lockfiles")},
    "base": {"image": (str, "python:3.11-slim-bookworm"), "tag": (str, "imagekit/os:bookworm-py311"),
             "mirror": (str, "http://deb.debian.org/debian"), "suite": (str, "bookworm")},
    "cache": {"dir": (str, "~/.cache/imagekit")},
    "verify": {"notebook": (str, "notebook"), "ray": (str, "ray"), "minio_image": (str, "minio/minio:latest"),
               "s3_standin": (str, "s3"), "examples": (str, "examples/notebooks")},
}
# Keys that only the environment may set: secrets never live in a committed file.
ENV_ONLY = {("registry", "password")}
IMAGE_KEYS = {"name": str, "repository": str, "context": str, "parent": str,
              "requirements": str, "tags": list, "shared": bool}
ENV_KEYS = {"name": str, "project": str, "immutable": bool, "registry": str}


@dataclass(frozen=True)
class ImageSpec:
    name: str
    repository: str
    context: Path
    requirements: Path
    parent: str | None = None  # another image's name; None: the OS base image
    tags: tuple[str, ...] = ()
    shared: bool = True  # False: resolved on its own (lockfiles/<name>.txt), never pushed


@dataclass(frozen=True)
class Environment:
    name: str
    project: str
    immutable: bool = False
    registry: str = ""  # another registry for this environment; "" = registry.url


@dataclass(frozen=True)
class Config:
    root: Path
    source: str
    settings: Mapping[str, Mapping[str, Any]]
    images: tuple[ImageSpec, ...]
    environments: tuple[Environment, ...]
    origins: Mapping[str, str] = field(default_factory=dict)  # "section.key" -> where it came from

    def get(self, dotted: str) -> Any:
        section, key = dotted.split(".", 1)
        return self.settings[section][key]

    def path(self, dotted: str) -> Path:
        """A setting that names a path: relative to the config's folder, ``~`` expanded."""
        p = Path(self.get(dotted)).expanduser()
        return p if p.is_absolute() else self.root / p

    def image(self, name: str) -> ImageSpec:
        for img in self.images:
            if img.name == name:
                return img
        raise ConfigError(f"no image named '{name}'", source=self.source,
                          hint=f"known images: {', '.join(i.name for i in self.images)}")

    def environment(self, name: str) -> Environment:
        for env in self.environments:
            if env.name == name:
                return env
        raise ConfigError(f"no environment named '{name}'", source=self.source,
                          hint=f"known environments: {', '.join(e.name for e in self.environments)}")


def find(start: Path | None = None) -> Path:
    """The imagekit.toml in ``start`` or the nearest parent folder."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / FILENAME).is_file():
            return folder / FILENAME
    raise ConfigError(f"no {FILENAME} in {here} or any parent folder",
                      hint=f"run imagekit from the repository, or pass --config PATH / set IMAGEKIT_CONFIG")


def load(path: Path | str | None = None, *, env: Mapping[str, str] | None = None,
         overrides: Mapping[str, Any] | None = None) -> Config:
    """Read the config file and apply IMAGEKIT_* variables from ``env`` and flag ``overrides``.

    ``overrides`` maps "section.key" to a value; None values are ignored (flag not given).
    """
    env = os.environ if env is None else env
    if path is None and env.get("IMAGEKIT_CONFIG"):
        path = Path(env["IMAGEKIT_CONFIG"])
    path = find() if path is None else Path(path)
    source = str(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", hint="pass --config PATH to an existing imagekit.toml")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", source=source) from None

    known = set(SCALARS) | {"images", "environments"}
    for section in data:
        if section not in known:
            raise ConfigError("unknown section", key=section, source=source,
                              hint=f"known sections: {', '.join(sorted(known))}")
    settings: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    for section, keys in SCALARS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError("must be a table", key=section, source=source)
        for key in table:
            if key not in keys:
                raise ConfigError("unknown key", key=f"{section}.{key}", source=source,
                                  hint=f"known keys in [{section}]: {', '.join(keys)}")
            if (section, key) in ENV_ONLY:
                raise ConfigError("secrets may not be written in the config file", key=f"{section}.{key}",
                                  source=source, hint=f"set IMAGEKIT_{section.upper()}_{key.upper()} instead")
        settings[section] = {}
        for key, (typ, default) in keys.items():
            dotted, var = f"{section}.{key}", f"IMAGEKIT_{section.upper()}_{key.upper()}"
            value, origin = default, "default"
            if key in table:
                value, origin = _typed(table[key], typ, dotted, source), source
            if var in env:
                value, origin = _parse_env(env[var], typ, var), var
            if overrides and overrides.get(dotted) is not None:
                value, origin = _typed(overrides[dotted], typ, dotted, "command-line flag"), "flag"
            settings[section][key] = value
            origins[dotted] = origin
    root = path.resolve().parent
    images = _images(data.get("images", []), root, source)
    environments = _environments(data.get("environments", []), source)
    return Config(root=root, source=source, settings=settings, images=images,
                  environments=environments, origins=origins)


def _typed(value: Any, typ: type, key: str, source: str) -> Any:
    if typ is int and isinstance(value, bool) or not isinstance(value, typ):
        raise ConfigError(f"expected {typ.__name__}, got {type(value).__name__} {value!r}",
                          key=key, source=source)
    return value


def _parse_env(raw: str, typ: type, var: str) -> Any:
    if typ is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"expected true or false, got {raw!r}", key=var, source="environment")
    if typ is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"expected a whole number, got {raw!r}", key=var, source="environment") from None
    return raw


def _table_list(items: Any, name: str, keys: dict[str, type], required: tuple[str, ...],
                source: str) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise ConfigError(f"must be an array of tables ([[{name}]])", key=name, source=source)
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError("must be a table", key=where, source=source)
        for key, value in item.items():
            if key not in keys:
                raise ConfigError("unknown key", key=f"{where}.{key}", source=source,
                                  hint=f"known keys: {', '.join(keys)}")
            _typed(value, keys[key], f"{where}.{key}", source)
        for key in required:
            if key not in item:
                raise ConfigError("missing required key", key=f"{where}.{key}", source=source)
    names = [item["name"] for item in items]
    for n in names:
        if names.count(n) > 1:
            raise ConfigError(f"name '{n}' is used twice", key=name, source=source)
    return items


def _images(items: Any, root: Path, source: str) -> tuple[ImageSpec, ...]:
    items = _table_list(items, "images", IMAGE_KEYS, ("name",), source)
    if not items:
        raise ConfigError("at least one [[images]] table is required", key="images", source=source)
    specs = []
    for item in items:
        context = root / item.get("context", f"images/{item['name']}")
        tags = item.get("tags", ["{lock}"])
        if not all(isinstance(t, str) and t for t in tags):
            raise ConfigError("must be a list of non-empty strings", key=f"images.{item['name']}.tags",
                              source=source)
        specs.append(ImageSpec(name=item["name"], repository=item.get("repository", item["name"]),
                               context=context, parent=item.get("parent"), tags=tuple(tags),
                               shared=item.get("shared", True),
                               requirements=root / item.get("requirements", str(context / "requirements.in"))))
    from imagekit.images import build_order  # images validates the hierarchy
    build_order(specs, source=source)
    for spec in specs:
        if spec.parent and not spec.shared:
            raise ConfigError("an image with shared = false cannot have a parent", key=f"images.{spec.name}.parent",
                              source=source)
    return tuple(specs)


def _environments(items: Any, source: str) -> tuple[Environment, ...]:
    items = _table_list(items, "environments", ENV_KEYS, ("name", "project"), source)
    last = len(items) - 1
    return tuple(Environment(name=e["name"], project=e["project"], immutable=e.get("immutable", i == last),
                             registry=e.get("registry", ""))
                 for i, e in enumerate(items))

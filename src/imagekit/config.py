"""imagekit.toml as typed, frozen sections, and the precedence flag > IMAGEKIT_* variable > file > default.

Each section is a dataclass; its fields are the keys, their types and defaults. Every key is
also ``IMAGEKIT_<SECTION>_<KEY>``. ``Config.origins`` says where each value came from, for errors.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagekit import redact
from imagekit.errors import ConfigError
from imagekit.images import Environment, ImageSpec, build_order
from imagekit.settings import (
    CHOICES,
    ENV_ONLY,
    SECTIONS,
    BuildSettings,
    CacheSettings,
    LockSettings,
    OsSettings,
    ProjectSettings,
    RegistrySettings,
    TrustSettings,
    VerifySettings,
)

FILENAME = "imagekit.toml"


RENAMED = {"base": "os"}
IMAGE_KEYS = {"name": str, "repository": str, "context": str, "parent": str,
              "requirements": str, "tags": list, "shared": bool, "base": str}
ENV_KEYS = {"name": str, "project": str, "immutable": bool, "registry": str, "namespace": str, "redis": str,
            "redis_secret": str, "manifests": str}
OTHER_VARIABLES = ("IMAGEKIT_CONFIG", "IMAGEKIT_RUN_ID")


@dataclass(frozen=True)
class Config:
    root: Path
    source: str
    project: ProjectSettings
    registry: RegistrySettings
    lock: LockSettings
    os: OsSettings
    cache: CacheSettings
    build: BuildSettings
    verify: VerifySettings
    trust: TrustSettings
    images: tuple[ImageSpec, ...]
    environments: tuple[Environment, ...]
    origins: Mapping[str, str] = field(default_factory=dict)  # "section.key" -> where it came from
    committed: Mapping[str, Any] = field(default_factory=dict)  # "section.key" -> the file's own value
    warnings: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)  # the variables it was read with

    def path(self, value: str) -> Path:
        """A setting that names a path: relative to the config's folder, ``~`` expanded."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def cache_dir(self) -> Path:
        return self.path(self.cache.dir)

    def image(self, name: str) -> ImageSpec:
        return self._named(self.images, name, "image")

    def environment(self, name: str) -> Environment:
        return self._named(self.environments, name, "environment")

    def _named(self, items, name: str, what: str):
        found = next((i for i in items if i.name == name), None)
        if found is None:
            raise ConfigError(f"no {what} named '{name}'", source=self.source,
                              hint=f"known {what}s: {', '.join(i.name for i in items)}")
        return found

    @property
    def first_project(self) -> str:
        """Where images enter: the first environment's registry project."""
        return self.environments[0].project if self.environments else "library"


def find(start: Path | None = None) -> Path:
    """The imagekit.toml in ``start`` or the nearest parent folder."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / FILENAME).is_file():
            return folder / FILENAME
    raise ConfigError(f"no {FILENAME} in {here} or any parent folder",
                      hint="run imagekit from the repository, or pass --config PATH / set IMAGEKIT_CONFIG")


def load(path: Path | str | None = None, *, env: Mapping[str, str] | None = None,
         overrides: Mapping[str, Any] | None = None) -> Config:
    """Read the config file and apply IMAGEKIT_* variables from ``env`` and flag ``overrides``.

    ``overrides`` maps "section.key" to a value; None values are ignored (flag not given).
    """
    env = dict(os.environ if env is None else env)
    if path is None and env.get("IMAGEKIT_CONFIG"):
        path = Path(env["IMAGEKIT_CONFIG"])
    path = find() if path is None else Path(path)
    source = str(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", hint="pass --config PATH to an existing imagekit.toml")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r})", source=source,
                          hint="save imagekit.toml as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML: {e}", source=source) from None

    known = set(SECTIONS) | {"images", "environments"}
    for section in data:
        if section in RENAMED:
            raise ConfigError(f"section [{section}] is now [{RENAMED[section]}]", key=section, source=source,
                              hint=f"rename [{section}] to [{RENAMED[section]}] in {source}")
        if section not in known:
            raise ConfigError("unknown section", key=section, source=source,
                              hint=f"known sections: {', '.join(sorted(known))}")
    origins: dict[str, str] = {}
    sections = {name: _section(name, cls, data.get(name, {}), env, overrides or {}, source, origins)
                for name, cls in SECTIONS.items()}
    committed = {f"{name}.{k}": v for name in SECTIONS for k, v in (data.get(name) or {}).items()}
    root = path.resolve().parent
    images = _images(data.get("images", []), root, source)
    environments = _environments(data.get("environments", []), source)
    for secret in (sections["registry"].password, sections["lock"].index_password, sections["trust"].signing_key):
        redact.register(secret)
    redact.register_url(sections["lock"].index_url)
    return Config(root=root, source=source, images=images, environments=environments, origins=origins,
                  committed=committed,
                  warnings=tuple(_unknown_variables(env, environments)), env=env, **sections)


def _section(name: str, cls: type, table: Any, env: Mapping[str, str], overrides: Mapping[str, Any],
             source: str, origins: dict[str, str]) -> Any:
    if not isinstance(table, dict):
        raise ConfigError("must be a table", key=name, source=source)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
        dotted = f"{name}.{key}"
        if key not in fields:
            raise ConfigError("unknown key", key=dotted, source=source,
                              hint=f"known keys in [{name}]: {', '.join(fields)}")
        if dotted in ENV_ONLY:
            raise ConfigError("secrets may not be written in the config file", key=dotted, source=source,
                              hint=f"set {variable(dotted)} instead")
    values = {}
    for key, f in fields.items():
        dotted, var = f"{name}.{key}", variable(f"{name}.{key}")
        value, origin = f.default, "default"
        if key in table:
            value, origin = _typed(table[key], f.type, dotted, source), source
        if var in env:
            value, origin = _parse_env(env[var], f.type, var), var
        if overrides.get(dotted) is not None:
            value, origin = _typed(overrides[dotted], f.type, dotted, "command-line flag"), "flag"
        if dotted in CHOICES and value not in CHOICES[dotted]:
            raise ConfigError(f"must be one of {', '.join(CHOICES[dotted])}, got {value!r}", key=dotted, source=origin)
        values[key] = value
        origins[dotted] = origin
    return cls(**values)


def variable(dotted: str) -> str:
    """The environment variable that sets ``section.key``."""
    return "IMAGEKIT_" + dotted.replace(".", "_").upper()


def _unknown_variables(env: Mapping[str, str], environments: tuple[Environment, ...]) -> list[str]:
    known = {variable(f"{s}.{f.name}") for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    known |= set(OTHER_VARIABLES) | {e.variable_prefix + k for e in environments for k in ("USERNAME", "PASSWORD")}
    warnings = []
    for var in sorted(env):
        if var.startswith("IMAGEKIT_") and var not in known and not var.startswith("IMAGEKIT_DEV_"):
            close = difflib.get_close_matches(var, known, n=1)
            warnings.append(f"{var} is not an imagekit setting and is ignored"
                            + (f" (did you mean {close[0]}?)" if close else ""))
    return warnings


TYPE_NAMES = {"str": str, "int": int, "bool": bool, "tuple[str, ...]": tuple}


def _typed(value: Any, annotation: str, key: str, source: str) -> Any:
    typ = TYPE_NAMES[annotation]
    if typ is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"expected a list of strings, got {value!r}", key=key, source=source)
        return tuple(value)
    if typ is int and isinstance(value, bool) or not isinstance(value, typ):
        raise ConfigError(f"expected {typ.__name__}, got {type(value).__name__} {value!r}", key=key, source=source)
    return value


def _parse_env(raw: str, annotation: str, var: str) -> Any:
    typ = TYPE_NAMES[annotation]
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
            raise ConfigError(f"expected a whole number, got {raw!r}", key=var,
                              source="environment") from None
    if typ is tuple:
        return tuple(v.strip() for v in raw.split(",") if v.strip())
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
            if not isinstance(value, keys[key]):
                raise ConfigError(f"expected {keys[key].__name__}, got {type(value).__name__} {value!r}",
                                  key=f"{where}.{key}", source=source)
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
                               shared=item.get("shared", True), base=item.get("base", ""),
                               requirements=root / item.get("requirements", str(context / "requirements.in"))))
    build_order(specs, source=source)
    for spec in specs:
        if spec.parent and not spec.shared:
            raise ConfigError("an image with shared = false cannot have a parent", key=f"images.{spec.name}.parent",
                              source=source)
        if spec.base and not spec.shared:
            raise ConfigError("an image with shared = false cannot have a vendor base", key=f"images.{spec.name}.base",
                              source=source, hint="a vendor-based image holds the shared lock's views")
    return tuple(specs)


def _environments(items: Any, source: str) -> tuple[Environment, ...]:
    items = _table_list(items, "environments", ENV_KEYS, ("name", "project"), source)
    last = len(items) - 1
    return tuple(Environment(name=e["name"], project=e["project"], immutable=e.get("immutable", i == last),
                             **{k: e[k] for k in ENV_KEYS.keys() - {"name", "project", "immutable"} if k in e})
                 for i, e in enumerate(items))

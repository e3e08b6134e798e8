"""Manifests follow promotion: the image references in an environment's folder of a GitOps
repository, rewritten to the digests the environment runs, and nothing else (comments, order,
quoting and every other byte stay). Found by the YAML parser, edited in the text at the places it
reports: plain `image:` fields (pods, KubeRay groups, KubeSpawner overrides), Zero to JupyterHub's
`image: {name, tag}` (the tag becomes `<version>@sha256:...`) and kustomize's `images:` entries
(`newName`, and `digest` in place of `newTag`), and Helm values' `image: {repository, tag}` (KubeRay's
ray-cluster chart; with Bitnami's `registry` split off; the tag becomes `<version>@sha256:...`, or
`digest` is set where the mapping has it), wherever they sit. An image is recognised by its
repository's last path segment (`ray`, `scipy-notebook`), whatever registry or project the folder
names now; any tag it has is replaced by the pinned one, a release imagekit does not know included."""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from imagekit import attest, files
from imagekit.config import Config
from imagekit.errors import ConfigError
from imagekit.inventory import MOVING_TAG, Held, runs
from imagekit.verify.policy import verified_set


@dataclass(frozen=True)
class Change:
    file: str  # relative to the folder
    line: int
    old: str
    new: str


@dataclass(frozen=True)
class FolderUpdate:
    folder: str
    env: str
    changes: list[Change] = field(default_factory=list)
    found: int = 0  # references to the environment's images, changed or not
    diff: str = ""  # unified, relative paths
    written: bool = False


def pins(cfg: Config, env_name: str) -> dict[str, Held]:
    """Repository name -> what the environment runs of each image of the verified set: what `current`
    names; in the first environment (images enter it by push, nothing is promoted there) its newest
    set verified together, which takes the trusted key (trust.public_key)."""
    env = cfg.environment(env_name)
    public = attest.trusted_key(cfg) if env == cfg.environments[0] and cfg.trust.public_key else None
    return {cfg.image(n).repository: h for n, h in runs(cfg, env, verified_set(cfg), public).items()}


def _base(ref: str) -> str:
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def _pairs(node) -> dict:
    return {k.value: (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}


class _Scan:
    """The edits one file needs: (start, end, replacement, line, old, new), and the references found."""

    def __init__(self, wanted: dict[str, Held]) -> None:
        self.wanted, self.edits, self.found = wanted, [], 0

    def pin(self, node) -> Held | None:
        return self.wanted.get(_base(node.value)) if isinstance(node, yaml.ScalarNode) else None

    def put(self, value, new: str) -> None:
        quote = value.style if value.style in ("'", '"') else ""
        if value.value != new:
            self.edits.append((value.start_mark.index, value.end_mark.index, f"{quote}{new}{quote}",
                               value.start_mark.line + 1, value.value, new))

    def walk(self, node) -> None:
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                self.walk(child)
        if not isinstance(node, yaml.MappingNode):
            return
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name == "image" and (pin := self.pin(value)):
                self.found += 1
                self.put(value, pin.ref)
            elif name == "image" and isinstance(value, yaml.MappingNode) and (self.z2jh(value) or self.helm(value)):
                continue
            elif name == "images" and isinstance(value, yaml.SequenceNode):
                for entry in value.value:
                    if isinstance(entry, yaml.MappingNode):
                        self.kustomize(entry)
            else:
                self.walk(value)

    def z2jh(self, image) -> bool:
        """Zero to JupyterHub's `image: {name, tag}`: the tag carries the digest (the chart joins name:tag)."""
        fields = _pairs(image)
        pin = self.pin(fields.get("name", (None, None))[1])
        if pin is None or not isinstance(fields.get("tag", (None, None))[1], yaml.ScalarNode):
            return False
        self.found += 1
        self.put(fields["name"][1], pin.repository)
        self.put(fields["tag"][1], f"{pin.tag or MOVING_TAG}@{pin.digest}")
        return True

    def helm(self, image) -> bool:
        """A Helm chart's `image: {repository, tag}` (KubeRay's ray-cluster chart, most charts; Bitnami's
        split `registry` from `repository`): the tag carries the digest (charts join repository:tag), or
        the `digest` key holds it where the mapping has one."""
        fields = _pairs(image)
        pin = self.pin(fields.get("repository", (None, None))[1])
        if pin is None:
            return False
        self.found += 1
        if "registry" in fields:
            host, _, path = pin.repository.partition("/")
            self.put(fields["registry"][1], host)
            self.put(fields["repository"][1], path)
        else:
            self.put(fields["repository"][1], pin.repository)
        if "digest" in fields:
            self.put(fields["digest"][1], pin.digest)
        elif "tag" in fields:
            self.put(fields["tag"][1], f"{pin.tag or MOVING_TAG}@{pin.digest}")
        else:  # no tag: the pinned one follows the repository
            key, value = fields["repository"]
            self.edits.append((value.end_mark.index, value.end_mark.index,
                               f", tag: {pin.tag or MOVING_TAG}@{pin.digest}" if image.flow_style else
                               f"\n{' ' * key.start_mark.column}tag: {pin.tag or MOVING_TAG}@{pin.digest}",
                               key.start_mark.line + 1, "", f"tag: {pin.tag or MOVING_TAG}@{pin.digest}"))
        return True

    def kustomize(self, entry) -> None:
        """A kustomize `images:` entry: `newName` and `digest` set; a `newTag` becomes the `digest`."""
        fields = _pairs(entry)
        pin = self.pin((fields.get("newName") or fields.get("name") or (None, None))[1])
        if pin is None or "name" not in fields:
            return
        self.found += 1
        if "newName" in fields:
            self.put(fields["newName"][1], pin.repository)
        digest = f"digest: {pin.digest}"
        if "digest" in fields:
            self.put(fields["digest"][1], pin.digest)
        elif "newTag" in fields:
            key, value = fields["newTag"]
            self.edits.append((key.start_mark.index, value.end_mark.index, digest, key.start_mark.line + 1,
                               f"newTag: {value.value}", digest))
        else:  # neither: the digest follows the entry's name
            key, value = fields["name"]
            after = f", {digest}" if entry.flow_style else f"\n{' ' * key.start_mark.column}{digest}"
            self.edits.append((value.end_mark.index, value.end_mark.index, after, key.start_mark.line + 1, "", digest))


def yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder", hint="name the environment's folder in the GitOps repository")
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def plan(folder: Path, wanted: dict[str, Held], env: str) -> tuple[FolderUpdate, dict[Path, str]]:
    """What rewriting ``folder`` to ``wanted`` changes, and each changed file's new text. A file that is
    not YAML stops it (a Helm template does not belong in an environment's folder)."""
    changes, new_texts, diffs, found = [], {}, [], 0
    for path in yaml_files(folder):
        text = path.read_text()
        scan = _Scan(wanted)
        try:
            for node in yaml.compose_all(text):
                scan.walk(node)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not YAML: {str(e).splitlines()[0]}",
                              hint="point --manifests at plain YAML (kustomize, values files)") from None
        found += scan.found
        if not scan.edits:
            continue
        edits, new = sorted(scan.edits, key=lambda e: e[0]), text
        for start, end, replacement, *_ in reversed(edits):  # from the end: earlier offsets stay valid
            new = new[:start] + replacement + new[end:]
        rel = str(path.relative_to(folder))
        changes += [Change(rel, line, old, value) for _, _, _, line, old, value in edits]
        new_texts[path] = new
        diffs.append("".join(difflib.unified_diff(text.splitlines(True), new.splitlines(True), f"a/{rel}", f"b/{rel}")))
    return FolderUpdate(str(folder), env, changes, found, "".join(diffs)), new_texts


def update(folder: Path, wanted: dict[str, Held], env: str) -> FolderUpdate:
    """Rewrite the folder's references (idempotent: a second run changes nothing)."""
    result, texts = plan(folder, wanted, env)
    for path, text in texts.items():
        files.write(path, text)
    return dataclasses.replace(result, written=bool(texts))

"""The one wrapper around the Docker engine: docker-py's one client (one timeout policy, DOCKER_HOST
honoured) for images, builds, pulls and pushes. Containers are started by containers.py through it;
the BuildKit CLI builder is buildkit.py."""
from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from imagekit import progress
from imagekit.errors import EngineError
from imagekit.oci import Reference

HINT = "start the engine with `make dev-up` (installs docker.io and starts dockerd), or set DOCKER_HOST"
CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
               "StopSignal", "Shell", "Healthcheck", "OnBuild")


@dataclass(frozen=True)
class EngineInfo:
    version: str
    api_version: str
    storage_driver: str
    endpoint: str


@dataclass(frozen=True)
class ImageInfo:
    """What the engine knows of an image, in the names imagekit uses."""
    id: str
    labels: dict[str, str]
    size: int
    layers: tuple[str, ...]  # diff ids, bottom first
    repo_digests: tuple[str, ...]
    architecture: str
    config: dict = field(default_factory=dict, repr=False)  # the image config's "config" (Env, Cmd, ...)

    @property
    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config.get("Env") or [] if "=" in e)


class Engine:
    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    @classmethod
    def connect(cls) -> "Engine":
        try:
            client = docker.from_env(timeout=300)
            client.ping()
        except docker.errors.DockerException as e:
            raise EngineError(f"the Docker engine is not reachable: {e}", hint=HINT) from None
        return cls(client)

    def info(self) -> EngineInfo:
        v, i = self.client.version(), self.client.info()
        return EngineInfo(version=v.get("Version", "?"), api_version=v.get("ApiVersion", "?"),
                          storage_driver=i.get("Driver", "?"), endpoint=self.client.api.base_url)

    def image(self, ref: str) -> ImageInfo | None:
        """What the engine knows of ``ref``, or None when it has no such image."""
        try:
            data = self.client.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as e:
            raise EngineError(f"cannot inspect {ref}: {e.explanation}") from None
        config = data.get("Config") or {}
        return ImageInfo(id=data["Id"], labels=dict(config.get("Labels") or {}), size=data.get("Size", 0),
                         layers=tuple(data.get("RootFS", {}).get("Layers") or ()),
                         repo_digests=tuple(data.get("RepoDigests") or ()),
                         architecture=data.get("Architecture", "amd64"),
                         config={k: config[k] for k in CONFIG_KEYS if config.get(k) is not None})

    def labelled(self, *labels: str) -> list[ImageInfo]:
        """Every image carrying one of ``labels`` ("key=value"): one listing (the engine's filters cannot say
        "or", and a listing costs about as much filtered as not), then each image inspected."""
        wanted = [tuple(label.split("=", 1)) for label in labels]
        ids = dict.fromkeys(i["Id"] for i in self.client.api.images()
                            if any((i.get("Labels") or {}).get(k) == v for k, v in wanted))
        return [info for i in ids if (info := self.image(i))]  # one may go meanwhile

    def history(self, ref: str) -> list[dict]:
        """The image's history, oldest first, in the image config's spelling."""
        entries = []
        for h in reversed(self.client.api.history(ref)):
            when = datetime.datetime.fromtimestamp(h.get("Created", 0), datetime.timezone.utc)
            entry = {"created": when.isoformat().replace("+00:00", "Z"), "created_by": h.get("CreatedBy", "")}
            if h.get("Comment"):
                entry["comment"] = h["Comment"]
            if not h.get("Size"):
                entry["empty_layer"] = True
            entries.append(entry)
        return entries

    def pull(self, ref: str, *, auth: tuple[str, str] | None = None) -> str:
        """Pull ``ref``: "" when it was pulled, else why not, naming the registry (not reachable, refused
        the credentials, has no such image): the caller says it, or says what it does instead."""
        registry = Reference.parse(ref).registry or "docker.io"
        try:
            self.client.images.pull(ref, auth_config={"username": auth[0], "password": auth[1]} if auth else None)
            return ""
        except docker.errors.APIError as e:
            why = str(e.explanation or e).strip()
            kind = ("asks for credentials (none were given)" if re.search(r"no basic auth credentials", why, re.I)
                    else "refused the credentials" if re.search(r"unauthorized|authentication required|denied", why, re.I)
                    else "has no such image" if re.search(r"not found|manifest unknown", why, re.I)
                    else "could not be reached" if re.search(r"dial tcp|no such host|timeout|connection refused", why, re.I)
                    else "refused the pull")
            return f"the registry {registry} {kind}: {why.splitlines()[0][:300]}"

    def import_rootfs(self, tar: Path, ref: str, changes: list[str]) -> str:
        """``docker import`` a root filesystem tarball as ``ref``; return the image id."""
        r = Reference.parse(ref)
        try:
            self.client.api.import_image_from_file(str(tar), repository=r.repository, tag=r.tag or "latest",
                                                   changes=changes)
        except docker.errors.APIError as e:
            raise EngineError(f"docker import of {tar} failed: {e.explanation}") from None
        return self.client.api.inspect_image(ref)["Id"]

    def load(self, archive) -> None:
        """``docker load`` an image archive (docker-save format): an open file or an iterable of byte chunks."""
        try:
            for chunk in self.client.api.load_image(archive):
                if "error" in chunk:
                    raise EngineError(f"docker load failed: {chunk['error']}")
        except docker.errors.APIError as e:
            raise EngineError(f"docker load failed: {e.explanation}") from None

    def build(self, context: Path, *, tags: list[str], buildargs: dict[str, str], labels: dict[str, str],
              on_line: Callable[[str], None] | None = None) -> str:
        """Build ``context`` with the classic builder through the API, no network; return the image id
        (buildkit.py chooses between this and BuildKit)."""
        note, image_id = progress.output(on_line), ""
        try:
            for chunk in self.client.api.build(path=str(context), tag=tags[0], buildargs=buildargs, labels=labels,
                                               network_mode="none", rm=True, forcerm=True, decode=True):
                if "error" in chunk:
                    raise EngineError(f"build of {context.name} failed: {chunk['error'].strip()}")
                for line in chunk.get("stream", "").splitlines():
                    note(line)
                image_id = chunk.get("aux", {}).get("ID", image_id)
        except docker.errors.APIError as e:
            raise EngineError(f"build of {context.name} failed: {e.explanation}") from None
        for ref in tags[1:]:
            self.tag(image_id, ref)
        return image_id

    def tag(self, image: str, ref: str) -> None:
        r = Reference.parse(ref)
        self.client.api.tag(image, f"{r.registry}/{r.repository}" if r.registry else r.repository, r.tag or "latest")

    def push(self, image_id: str, repository: str, tag: str, *, auth: tuple[str, str] | None = None,
             on_line: Callable[[str], None] | None = None) -> str:
        """Tag ``image_id`` as repository:tag and push it; return the manifest digest.

        The engine uploads every layer before the manifest, so the tag never names a half-pushed
        image, and layers already in the registry are not sent again.
        """
        note = progress.output(on_line)
        auth_config = {"username": auth[0], "password": auth[1]} if auth else None
        self.client.api.tag(image_id, repository, tag)
        digest = ""
        try:
            for event in self.client.api.push(repository, tag, stream=True, decode=True, auth_config=auth_config):
                if "error" in event:
                    raise EngineError(f"push of {repository}:{tag} failed: {event['error']}",
                                      hint="re-run the push once the registry is back: it resumes")
                if event.get("status") in ("Pushing", "Pushed", "Layer already exists", "Mounted from"):
                    note(f"{repository}:{tag} {event.get('id', '')} {event['status']}")
                digest = event.get("aux", {}).get("Digest") or digest
        except docker.errors.APIError as e:
            raise EngineError(f"push of {repository}:{tag} failed: {e.explanation}") from None
        if not digest:
            raise EngineError(f"push of {repository}:{tag} reported no digest")
        return digest

"""The one wrapper around the Docker engine: docker-py for the API, the docker CLI for BuildKit builds.

Files go in and out of containers through the API (``put_archive``/``get_archive``), never bind
mounts, so everything here also works with a remote engine (``DOCKER_HOST=tcp://...``).
"""
from __future__ import annotations

import datetime
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from imagekit import proc, progress
from imagekit.errors import EngineError, ToolError
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

    def pull(self, ref: str, *, auth: tuple[str, str] | None = None) -> bool:
        """Pull ``ref``; False when no registry has it or none is reachable (air-gapped)."""
        try:
            self.client.images.pull(ref, auth_config={"username": auth[0], "password": auth[1]} if auth else None)
            return True
        except docker.errors.APIError:
            return False

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
        """``docker load`` an image archive (docker-save format) from an open file."""
        try:
            for chunk in self.client.api.load_image(archive):
                if "error" in chunk:
                    raise EngineError(f"docker load failed: {chunk['error']}")
        except docker.errors.APIError as e:
            raise EngineError(f"docker load failed: {e.explanation}") from None

    def run(self, image: str, cmd: list[str], *, network: bool = False, user: str | None = None,
            env: Mapping[str, str] | None = None, inputs: Mapping[str, Path | bytes] | None = None,
            timeout: float = 600) -> str:
        """Run ``cmd`` in a throwaway container, host files or folders (or bytes) copied in at the
        given paths first; return its output or raise EngineError with it."""
        with self.container(image, cmd, network="bridge" if network else "none", user=user, env=env) as c:
            for dest, src in (inputs or {}).items():
                self.put(c, dest, src)
            return self.wait(c, image, cmd, timeout)

    def run_with_files(self, image: str, cmd: list[str], *, inputs: Mapping[str, Path], outputs: list[str],
                       env: Mapping[str, str] | None = None, network: str = "none", user: str = "root",
                       timeout: float = 600) -> dict[str, bytes]:
        """Run ``cmd`` with host files or folders copied in at the given paths; return each output
        file's bytes. ToolError (with the output) when the command fails."""
        with self.container(image, cmd, network=network, user=user, env=env) as c:
            for dest, src in inputs.items():
                self.put(c, dest, src)
            try:
                self.wait(c, image, cmd, timeout)
            except EngineError as e:
                raise ToolError(e.message, cmd=cmd, output=e.message) from None
            result = {}
            for path in outputs:
                with tarfile.open(fileobj=io.BytesIO(b"".join(self.get(c, path))), mode="r|") as tar:
                    member = tar.next()
                    result[path] = tar.extractfile(member).read() if member and member.isfile() else b""
            return result

    def wait(self, c, image: str, cmd: list[str], timeout: float) -> str:
        """Start a created container and wait for it; its output, or EngineError with the output's tail."""
        c.start()
        try:
            status = c.wait(timeout=timeout)
        except Exception:  # requests' ReadTimeout and friends: the command ran too long
            raise EngineError(f"{' '.join(cmd)[:120]} did not finish within {timeout:.0f} s in {image}") from None
        output = c.logs().decode(errors="replace")
        if status.get("StatusCode") != 0:
            tail = "\n".join(output.strip().splitlines()[-30:])
            raise EngineError(f"{' '.join(cmd)[:120]} failed in {image} (exit {status.get('StatusCode')}):\n{tail}")
        return output

    def container(self, image: str, cmd: list[str], *, network: str = "none", user: str | None = None,
                  env: Mapping[str, str] | None = None) -> "_Container":
        """A created (not started) container that is removed on leaving the ``with`` block."""
        try:
            c = self.client.containers.create(image, cmd, user=user, network_mode=network, detach=True,
                                              environment=dict(env or {}))
        except docker.errors.ImageNotFound:
            raise EngineError(f"image {image} is not in the engine") from None
        except docker.errors.APIError as e:
            raise EngineError(f"cannot create a container from {image}: {e.explanation}") from None
        return _Container(c)

    @staticmethod
    def put(c, dest: str, src: Path | bytes) -> None:
        """Copy a host file or folder (or bytes) into a created container as ``dest``."""
        with tempfile.TemporaryFile() as buf:
            with tarfile.open(fileobj=buf, mode="w") as tar:
                if isinstance(src, bytes):
                    info = tarfile.TarInfo(dest.lstrip("/"))
                    info.size, info.mode = len(src), 0o644
                    tar.addfile(info, io.BytesIO(src))
                else:
                    tar.add(str(src), arcname=dest.lstrip("/"), filter=_readable)
            buf.seek(0)
            if not c.put_archive("/", buf):
                raise EngineError(f"could not copy {src} into the container at {dest}")

    @staticmethod
    def get(c, path: str) -> Iterator[bytes]:
        """A file or folder of a container as a tar stream (the folder's name first)."""
        try:
            stream, _ = c.get_archive(path)
        except docker.errors.NotFound:
            raise EngineError(f"{path} does not exist in the container") from None
        return stream

    def build(self, context: Path, *, tags: list[str], buildargs: dict[str, str], labels: dict[str, str],
              builder: str = "auto", on_line: Callable[[str], None] | None = None) -> str:
        """Build ``context`` with no network; return the image id. BuildKit through the docker CLI
        where the CLI offers it, else the classic builder through the API."""
        note = progress.output(on_line)
        cli = buildkit_cli() if builder in ("auto", "buildkit") else None
        if builder == "buildkit" and cli is None:
            raise EngineError("BuildKit was asked for but no docker CLI here offers it",
                              hint="install docker.io (its 20.10 client has BuildKit built in) or the buildx plugin")
        if cli is not None:
            argv, env = cli
            with tempfile.TemporaryDirectory(prefix="imagekit-build-") as tmp:
                iid = Path(tmp) / "iid"
                cmd = [*argv, "--progress=plain", "--network=none", "--iidfile", str(iid),
                       *(f"--build-arg={k}={v}" for k, v in buildargs.items()),
                       *(f"--label={k}={v}" for k, v in labels.items()), *(f"--tag={t}" for t in tags), str(context)]
                try:
                    proc.run(cmd, env=env, on_line=note)
                except ToolError as e:
                    raise EngineError(f"build of {context.name} failed:\n{e.output.strip()[-3000:]}") from None
                return iid.read_text().strip()
        image_id = ""
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

    def push(self, image_id: str, repository: str, tags: list[str], *, auth: tuple[str, str] | None = None,
             on_line: Callable[[str], None] | None = None) -> str:
        """Tag ``image_id`` as repository:tag and push each tag; return the manifest digest.

        The engine uploads every layer before the manifest, so a tag never names a half-pushed
        image, and layers already in the registry are not sent again.
        """
        note = progress.output(on_line)
        auth_config = {"username": auth[0], "password": auth[1]} if auth else None
        digests = set()
        for tag in tags:
            self.client.api.tag(image_id, repository, tag)
            try:
                for event in self.client.api.push(repository, tag, stream=True, decode=True, auth_config=auth_config):
                    if "error" in event:
                        raise EngineError(f"push of {repository}:{tag} failed: {event['error']}",
                                          hint="re-run the push once the registry is back: it resumes")
                    if event.get("status") in ("Pushing", "Pushed", "Layer already exists", "Mounted from"):
                        note(f"{repository}:{tag} {event.get('id', '')} {event['status']}")
                    if event.get("aux", {}).get("Digest"):
                        digests.add(event["aux"]["Digest"])
            except docker.errors.APIError as e:
                raise EngineError(f"push of {repository}:{tag} failed: {e.explanation}") from None
        if len(digests) != 1:
            raise EngineError(f"push of {repository} reported digests {sorted(digests)}, expected one")
        return digests.pop()


class _Container:
    """A docker-py container that is force-removed when the ``with`` block ends."""

    def __init__(self, c) -> None:
        self.c = c

    def __enter__(self):
        return self.c

    def __exit__(self, *exc) -> None:
        try:
            self.c.remove(force=True)
        except docker.errors.APIError:
            pass


def _readable(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mode |= 0o555 if info.isdir() else 0o444  # readable (folders: enterable) by the image's user
    return info


def buildkit_cli() -> tuple[list[str], dict[str, str]] | None:
    """The docker CLI invocation that builds with BuildKit here: buildx, or a pre-23 client with
    DOCKER_BUILDKIT=1 (newer clients without buildx refuse that). None: use the classic builder."""
    for docker_bin in dict.fromkeys(filter(None, [shutil.which("docker"), "/usr/bin/docker"])):
        if not os.access(docker_bin, os.X_OK):
            continue
        try:
            proc.run([docker_bin, "buildx", "version"])
            return [docker_bin, "buildx", "build", "--load"], {}
        except ToolError:
            pass
        try:
            version = proc.run([docker_bin, "version", "--format", "{{.Client.Version}}"]).strip()
        except ToolError as e:
            version = e.output.strip().splitlines()[0] if e.output.strip() else ""
        if version and version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
            return [docker_bin, "build"], {"DOCKER_BUILDKIT": "1"}
    return None

"""Every container imagekit starts, started one way, through the engine's one client. A ``Run`` is what
one command starts: a network of its own and its containers, each labelled with the run
(``org.imagekit.run``: IMAGEKIT_RUN_ID, or one id per process), all removed when the run ends, fails or
is interrupted (SIGINT; SIGTERM once the CLI turns it into an interrupt). A ``Container`` is one, in
the testcontainers style: image, command, environment, an alias on the run's network, published ports
(``url``), ``exec`` (through the image's entrypoint), ``put``, ``read``, ``logs``; a start that fails
says the exit code and its last lines. One small class per kind (services.py) adds its readiness."""
from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import docker.errors
import requests

from imagekit import forward, inimage, proc
from imagekit.engine import Engine
from imagekit.errors import EngineError, ToolError
from imagekit.interrupts import held_back

RUN_LABEL, KIND_LABEL, PART_LABEL = "org.imagekit.run", "org.imagekit.kind", "org.imagekit.part"
_PROCESS_RUN = secrets.token_hex(6)


def run_id() -> str:
    """What every container and network of this process is labelled with (IMAGEKIT_RUN_ID: a CI job's own)."""
    return os.environ.get("IMAGEKIT_RUN_ID") or _PROCESS_RUN


def host() -> str:
    """Where this process reaches a container's published ports: the engine's machine."""
    return "127.0.0.1" if forward.local_engine() else urlsplit(os.environ["DOCKER_HOST"]).hostname


class Container:
    """One container: configured here, created and started by ``Run.start``."""
    kind = "container"
    settle: float | None = None  # seconds Run.start waits for ready() when not told (None: it does not wait)

    def __init__(self, image: str, command: list[str] | None = None, *, alias: str = "", env: Mapping[str, str] = (),
                 ports: tuple[int, ...] = (), user: str | None = None, shm: str = "512m",
                 network_mode: str | None = None, files: Mapping[str, Path | bytes] = (),
                 entrypoint: list[str] | None = None, scratch: str = "", volumes: Sequence[str] = ()) -> None:
        self.image, self.command, self.alias, self.env, self.entrypoint = image, command, alias, dict(env), entrypoint
        self.ports, self.user, self.shm, self.network_mode, self.files = ports, user, shm, network_mode, dict(files)
        self.scratch = scratch  # a folder in memory (tmpfs): work thrown away with the container, off the disk
        self.volumes = list(volumes)  # named volumes mounted, docker-py's "volume:path:mode"
        self.c, self.config, self.entry = None, {}, []  # once created: it, its image's config, what an exec runs in

    @property
    def what(self) -> str:
        return f"the {self.kind} ({self.image[:71]})"

    def create(self, engine: Engine, name: str, network: str | None, labels: dict[str, str]) -> None:
        publish = ("127.0.0.1", None) if forward.local_engine() else None
        where = {"network_mode": self.network_mode} if self.network_mode or not network else {
            "network": network, "networking_config": {network: engine.client.api.create_endpoint_config(
                aliases=[self.alias] if self.alias else None)}}
        try:
            info = engine.image(self.image)
            self.config = info.config if info else {}
            if self.entrypoint is not None:  # the image's own replaced (a build step, not the image's work)
                self.config = {**self.config, "Entrypoint": self.entrypoint}
            self.entry = inimage.entrypoint(self.config)
            with held_back():  # a create the engine finishes is always known: it is removed with the run
                self.c = engine.client.containers.create(
                    self.image, self.command, entrypoint=self.entrypoint, user=self.user, environment=self.env,
                    detach=True, shm_size=self.shm, ports={f"{p}/tcp": publish for p in self.ports},
                    labels={**labels, KIND_LABEL: self.kind}, hostname=self.alias or None, name=name,
                    tmpfs={self.scratch: "exec"} if self.scratch else None, volumes=self.volumes or None,
                    extra_hosts={forward.HOST_ALIAS: "host-gateway"} if network else None, **where)
        except docker.errors.ImageNotFound:
            raise EngineError(f"image {self.image} is not in the engine") from None
        except docker.errors.APIError as e:
            raise EngineError(f"cannot create {self.what}: {e.explanation}") from None

    def start(self) -> None:
        try:
            self.c.start()
        except docker.errors.APIError as e:
            raise EngineError(f"cannot start {self.what}: {e.explanation}") from None

    def ready(self, timeout: float) -> None:
        """Wait until the container can do its work (each kind knows how); here: it keeps running."""
        if why := self.exited():
            raise EngineError(f"{self.what} {why}")

    def exited(self) -> str:
        """Why the container is not running ("" while it runs): its exit code and last log lines."""
        try:
            self.c.reload()
        except docker.errors.NotFound:
            return "is gone"
        if self.c.status in ("running", "created"):
            return ""
        code = self.c.attrs.get("State", {}).get("ExitCode")
        if code == 0 and self.config.get("Entrypoint") and self.command:
            return "exited at start: " + inimage.ran_nothing(self.image, self.config, self.logs(30))
        return f"exited at start (exit code {code}): {proc.reason(self.logs(30)) or 'it printed nothing'}"

    def url(self, port: int) -> str:
        """The published ``port`` as this process reaches it."""
        self.c.reload()
        bound = (self.c.ports.get(f"{port}/tcp") or [{}])[0].get("HostPort")
        if not bound:
            raise EngineError(f"{self.what} publishes no port {port}: {self.exited() or 'it is running'}")
        return f"http://{host()}:{bound}"

    def inside(self, port: int) -> str:
        """The URL other containers of the run use."""
        return f"http://{self.alias}:{port}"

    def exec(self, cmd: list[str], *, env: Mapping[str, str] | None = None, user: str = "",
             detach: bool = False) -> tuple[int, str]:
        """Run ``cmd`` in the running container: (exit code, output); 126 and why when it cannot run."""
        try:
            code, out = self.c.exec_run(cmd, environment=dict(env or {}), user=user, detach=detach)
        except docker.errors.APIError as e:
            return 126, f"cannot run it in the container: {e.explanation}"
        return (code or 0), (out or b"").decode(errors="replace") if not detach else ""

    def python(self, *args: str, path: str = "") -> list[str]:
        """``python ARGS`` with the image's Python, through its entrypoint (``path``: first on PYTHONPATH)."""
        return [*self.entry, *inimage.python(*args, path=path)]

    def sh(self, script: str) -> tuple[int, str]:
        """``bash -c script`` (as KubeRay's exec probes run): exit code, output stripped."""
        code, out = self.exec(["bash", "-c", script])
        return code, out.strip()

    def stream(self, cmd: list[str], note: Callable[[str], None], prefix: str) -> tuple[int, list[str]]:
        """Run ``cmd``, each line starting with ``prefix`` to ``note``: exit code, the last lines of output."""
        api, tail, pending = self.c.client.api, [], ""
        started = api.exec_create(self.c.id, cmd)
        for chunk in api.exec_start(started["Id"], stream=True):
            pending += chunk.decode(errors="replace")
            *lines, pending = pending.split("\n")
            for line in lines:
                if line.startswith(prefix):
                    note(line.removeprefix(prefix))
                tail = (tail + [line])[-40:]
        tail.append(pending)
        return api.exec_inspect(started["Id"])["ExitCode"], [t for t in tail if t.strip()]

    def put(self, dest: str, src: Path | bytes) -> None:
        """Copy a host file or folder (or bytes) into the container as ``dest`` (readable by any user)."""
        with tempfile.TemporaryFile() as buf:
            with tarfile.open(fileobj=buf, mode="w") as tar:
                if isinstance(src, bytes):
                    info = tarfile.TarInfo(dest.lstrip("/"))
                    info.size, info.mode = len(src), 0o644
                    tar.addfile(info, io.BytesIO(src))
                else:
                    tar.add(str(src), arcname=dest.lstrip("/"), filter=_readable)
            buf.seek(0)
            if not self.c.put_archive("/", buf):
                raise EngineError(f"could not copy {src} into {self.what} at {dest}")

    def archive(self, path: str) -> Iterator[bytes]:
        """A file or folder of the container as a tar stream."""
        try:
            stream, _ = self.c.get_archive(path)
        except docker.errors.NotFound:
            raise EngineError(f"{path} does not exist in {self.what}") from None
        return stream

    def read(self, path: str) -> bytes:
        """The bytes of one file of the container ("" for a folder)."""
        with tarfile.open(fileobj=io.BytesIO(b"".join(self.archive(path))), mode="r|") as tar:
            member = tar.next()
            return tar.extractfile(member).read() if member and member.isfile() else b""

    def logs(self, tail: int = 30) -> str:
        with contextlib.suppress(docker.errors.APIError):
            return self.c.logs(tail=tail).decode(errors="replace")
        return ""

    def wait(self, timeout: float) -> str:
        """Wait for the command to end: its output, or ToolError with its exit code, last lines and output."""
        cmd = " ".join(self.command or [])[:120]
        try:
            status = self.c.wait(timeout=timeout)
        except requests.exceptions.ReadTimeout:  # the command ran too long
            raise EngineError(f"{cmd} did not finish within {timeout:.0f} s in {self.image}") from None
        except (docker.errors.APIError, requests.RequestException) as e:  # the engine itself: said as it said it
            raise EngineError(f"waiting for {cmd} in {self.image}: {getattr(e, 'explanation', '') or e}") from None
        output = self.c.logs().decode(errors="replace")
        if status.get("StatusCode") != 0:
            tail = "\n".join(output.strip().splitlines()[-30:])
            raise ToolError(f"{cmd} failed in {self.image} (exit {status.get('StatusCode')}):\n{tail}",
                            cmd=self.command, output=output)
        return output

    def remove(self) -> None:
        """Remove the container; return once it is gone, also when another removal of it was under way."""
        if self.c is None:
            return
        with contextlib.suppress(docker.errors.APIError, requests.RequestException):
            try:
                self.c.remove(force=True)
            except docker.errors.APIError as e:  # 409: being removed elsewhere, holding its network until gone
                if e.status_code == 409:
                    self.c.wait(condition="removed", timeout=60)


def _readable(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid, info.gid, info.uname, info.gname = 0, 0, "root", "root"
    info.mode |= 0o555 if info.isdir() else 0o444  # readable (folders: enterable) by the image's user
    return info


class Run(contextlib.AbstractContextManager):
    """The containers one command starts, on a network of their own (``network=False``: none, for
    one-shot commands), all labelled with the run and all removed at the end, whatever ends it: what
    the run knows of, and what carries its label (a container whose create's answer was lost)."""

    def __init__(self, engine: Engine, what: str, *, network: bool = True,
                 note: Callable[[str], None] | None = None) -> None:
        self.engine, self.what, self.note, self.wants_network = engine, what, note or (lambda line: None), network
        self.name = f"imagekit-{what}-{secrets.token_hex(4)}"
        self.labels = {RUN_LABEL: run_id(), KIND_LABEL: what, PART_LABEL: self.name}
        self.containers: list[Container] = []
        self.stack = contextlib.ExitStack()  # what else ends with the run (a relay)
        self.network = None

    def __enter__(self) -> "Run":
        try:
            if self.wants_network:
                self.network = self.engine.client.networks.create(self.name, labels=self.labels)
        except docker.errors.APIError as e:
            self.close()
            raise EngineError(f"cannot create a network for {self.what}: {e.explanation}") from None
        except BaseException:
            self.close()
            raise
        return self

    def start(self, container: Container, *, inputs: Mapping[str, Path | bytes] | None = None,
              ready: float | None = None) -> Container:
        """``create`` it, start it; with ``ready``, wait that many seconds at most for it to be ready."""
        self.create(container, inputs=inputs).start()
        if (ready := container.settle if ready is None else ready) is not None:
            container.ready(ready)
        return container

    def create(self, container: Container, *, inputs: Mapping[str, Path | bytes] | None = None) -> Container:
        """Create ``container`` (owned by the run from then on) and copy ``inputs`` in: not started."""
        self.containers.append(container)
        role = re.sub(r"[^a-z0-9]+", "-", (container.alias or container.kind).lower()).strip("-")
        container.create(self.engine, f"{self.name}-{role}-{len(self.containers)}",
                         self.network.name if self.network else None, self.labels)
        for dest, src in {**container.files, **(inputs or {})}.items():
            container.put(dest, src)
        return container

    def enter(self, cm):
        """Enter the context manager ``cm`` for as long as the run lasts; return what it gives."""
        return self.stack.enter_context(cm)

    def __exit__(self, kind, *exc) -> None:
        if (removed := self.close()) and kind is not None:  # closed always; said when a failure ended it
            self.note(f"removed {removed} after {'an interrupt' if issubclass(kind, KeyboardInterrupt) else 'a failure'}")

    def close(self) -> str:
        """Remove every container and the network, a second interrupt held back meanwhile; what was removed."""
        mine = {"label": f"{PART_LABEL}={self.name}"}
        with held_back():
            for c in self.containers:
                c.remove()
            with contextlib.suppress(docker.errors.APIError, requests.RequestException):
                for c in self.engine.client.containers.list(all=True, filters=mine):
                    c.remove(force=True)
            self.stack.close()
            with contextlib.suppress(docker.errors.APIError, requests.RequestException):
                for n in self.engine.client.networks.list(filters=mine):
                    n.remove()
        names = [c.kind for c in self.containers]
        return (f"{len(names)} container(s) ({', '.join(names)})" if names else "") + (
            f"{' and ' if names else ''}network {self.name}" if self.network else "")


def run(engine: Engine, image: str, cmd: list[str], *, inputs: Mapping[str, Path | bytes] | None = None,
        outputs: tuple[str, ...] = (), network: str = "none", user: str | None = None,
        env: Mapping[str, str] | None = None, timeout: float = 600, entrypoint: list[str] | None = None,
        volumes: Sequence[str] = ()) -> str | tuple[str, dict[str, bytes]]:
    """Run ``cmd`` in a throwaway container of ``image`` (``network``: none unless asked, bridge or host), host
    files, folders or bytes copied in first: its output (with ``outputs``: and those files' bytes), or ToolError."""
    with Run(engine, "command", network=False) as r:
        c = r.start(Container(image, cmd, user=user, env=env or {}, network_mode=network, entrypoint=entrypoint,
                              volumes=volumes), inputs=inputs)
        output = c.wait(timeout)
        return (output, {path: c.read(path) for path in outputs}) if outputs else output

"""The containers a run starts, one class per kind, each with its command, its readiness and its URL:
the S3 server (MinIO or the stand-in), MLflow's tracking server, a Ray node (head or worker) started
as KubeRay starts it, the model server (Ray Serve in the Ray image, imagekit's serving code copied in),
and an image's container doing nothing until asked (the notebook trainer, the checkers)."""
from __future__ import annotations

import contextlib
import json
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping

from imagekit import inimage, wait
from imagekit.containers import Container
from imagekit.errors import EngineError, PreconditionError


class Idle(Container):
    """An image's container doing nothing until it is asked (exec): the notebook trainer, a checker. Its
    command goes through the image's entrypoint (docker-stacks' start.sh runs its hooks first); it is
    ready once the command itself has said so, and an entrypoint that never runs it is named."""
    kind = "idle container"
    settle = 120.0
    SAID = "imagekit: idle"

    def __init__(self, image: str, *, kind: str = "", **kw) -> None:
        super().__init__(image, ["sh", "-c", f"echo '{self.SAID}'; exec sleep infinity"], **kw)
        self.kind = kind or self.kind

    def ready(self, timeout: float) -> None:
        wait.until(f"{self.what} running its command", lambda: self.SAID in self.logs(200), timeout,
                   gone=self.exited)


class S3Server(Container):
    """The run's S3 server on the network as ``s3:9000``: MinIO (started as its image documents it:
    ``server /data``, both root credentials the run's keys) or the stand-in (its own command)."""
    kind = "S3 server"

    def __init__(self, image: str, keys: Mapping[str, str], *, minio: bool) -> None:
        root = {"MINIO_ROOT_USER": keys["AWS_ACCESS_KEY_ID"], "MINIO_ROOT_PASSWORD": keys["AWS_SECRET_ACCESS_KEY"]}
        super().__init__(image, ["server", "/data", "--address", ":9000"] if minio else None, alias="s3",
                         env={**keys, **(root if minio else {})}, ports=(9000,))
        self.keys = dict(keys)

    def ready(self, timeout: float) -> None:
        """A request signed with the run's keys is answered (MinIO checks every signature)."""
        import botocore.exceptions

        client = s3_client(self.url(9000), self.keys)
        wait.until(f"{self.what} answering signed requests", lambda: client.list_buckets() is not None, timeout,
                   retry=(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError), gone=self.exited)


def s3_client(url: str, keys: Mapping[str, str]):
    """A boto3 S3 client of ``url`` signed with ``keys`` (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)."""
    import boto3
    from botocore.config import Config as BotoConfig

    return boto3.client("s3", endpoint_url=url, config=BotoConfig(retries={"max_attempts": 1}),
                        region_name=keys.get("AWS_DEFAULT_REGION", "us-east-1"),
                        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"], aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])


def _answers(url: str, accept: Callable[[object], object] = lambda r: r.ok, timeout: float = 2) -> Callable[[], object]:
    """A probe: GET ``url`` from here, ``accept(response)`` the answer (falsy: not yet)."""
    import requests

    def probe():
        r = requests.get(url, timeout=timeout)
        return accept(r) or wait.Pending(f"HTTP {r.status_code} {r.text[:120]!r}")
    return probe


class TrackingServer(Container):
    """MLflow's tracking server on the network as ``mlflow:5000``."""
    kind = "MLflow tracking server"

    def __init__(self, image: str, env: Mapping[str, str]) -> None:
        super().__init__(image, None, alias="mlflow", env=env, ports=(5000,))

    def ready(self, timeout: float) -> None:
        import requests

        wait.until(f"{self.what} answering /health", _answers(f"{self.url(5000)}/health"), timeout,
                   retry=(requests.RequestException,), gone=self.exited)


class ModelServer(Container):
    """The Ray image serving ``models`` with Ray Serve: imagekit's model server copied in, run with the
    image's Python (`serve run`), never the image's default command; more models may be ``add``ed."""
    kind = "model server"
    MORE = f"{inimage.SERVING_IN}/more-models.json"  # IMAGEKIT_MODELS_FILE: read again at each /status

    def __init__(self, image: str, env: Mapping[str, str], models: Mapping[str, dict]) -> None:
        super().__init__(image, inimage.python("-c", inimage.SERVE, "run", f"{inimage.SERVING_IN}/serve.yaml",
                                               path=inimage.SERVING_IN),
                         alias="serve", env={**env, "IMAGEKIT_MODELS": json.dumps(models),
                                             "IMAGEKIT_MODELS_FILE": self.MORE}, ports=(8000,), shm="1g",
                         files=inimage.serving())
        self.models = dict(models)

    def add(self, models: Mapping[str, dict]) -> None:
        """More models to serve: loaded when /status is next asked (``ready`` asks it)."""
        self.models.update(models)
        self.put(self.MORE, json.dumps(self.models).encode())

    def ready(self, timeout: float) -> dict:
        """/status once the server knows every model: {"models": {name: status}, "fingerprints": ...}."""
        import requests

        def knows(r):
            found = r.json() if r.status_code == 200 else {}
            return found if set(found.get("models", {})) >= set(self.models) else None
        try:  # an exit before its port is asked fails the URL: the same fault, said the same way
            return wait.until(f"Ray Serve in {self.what}", _answers(f"{self.url(8000)}/status", knows, 60), timeout,
                              retry=(requests.RequestException, ValueError), gone=self.exited)
        except EngineError:  # NotReady too: what the image lacks for it (inimage.SERVE said it): its fault
            said = [line[len("imagekit: "):] for line in self.logs(30).splitlines() if line.startswith("imagekit: ")]
            if said and self.exited():
                raise PreconditionError(f"the Ray image {self.image} cannot serve models with Ray Serve: {said[-1]}",
                                        hint="its Python needs ray[serve] (Python 3.8 or newer)") from None
            raise


# The head's Ray Client proxier (ray/util/client/server/proxier.py) logs this when the server it started for a
# client died at once (a gRPC fork race under load); the client hears of it only some 40 s later
CLIENT_LOG, START_FAILED = "/tmp/ray/session_latest/logs/ray_client_server.err", "SpecificServer startup failed"
DIED_SAID = "tail -n 1 $(ls -t /tmp/ray/session_latest/logs/ray_client_server_[0-9]*.err | head -1) 2>/dev/null"
# what the proxier relays to a client whose server did not start, or that it could not reach, under load
CLIENT_START_FLAKES = ("Starting Ray client server failed", "Proxy failed to Connect to backend",
                       "psutil.ZombieProcess")
# Python printing how many nodes the head's GCS lists alive, from its dashboard's state API (asked as a driver,
# ray.init, it costs 4 s of CPU per ask)
ALIVE = ("import json, urllib.request as u; r = json.load(u.urlopen('http://localhost:8265/api/v0/nodes?detail=0', "
         "timeout=2)); print(sum(n['state'] == 'ALIVE' for n in r['data']['result']['result']))")
HEAD = ["ray", "start", "--head", "--dashboard-host=0.0.0.0", "--port=6379", "--ray-client-server-port=10001",
        "--num-cpus=1", "--disable-usage-stats", "--block"]


class RayNode(Container):
    """A Ray node started as KubeRay starts it: the head (``head``) or a worker joining it."""

    def __init__(self, image: str, *, head: bool = True, alias: str = "", env: Mapping[str, str] = (),
                 ports: tuple[int, ...] = ()) -> None:
        worker = ["ray", "start", "--address=head:6379", "--num-cpus=1", "--disable-usage-stats", "--block"]
        super().__init__(image, HEAD if head else worker, alias=alias or ("head" if head else "worker"), env=env,
                         ports=ports)
        self.kind = "Ray head" if head else "Ray worker"

    def ready(self, timeout: float) -> None:
        """The head's GCS (6379) and Ray Client server (10001) accept connections, asked by the image's Python
        in a few milliseconds (``ray health-check`` imports all of Ray: 3 s of CPU per ask, beside the boot)."""
        ask = "import socket; [socket.create_connection(('head', p), 2).close() for p in (6379, 10001)]"
        wait.until(f"{self.what} answering on 6379 and 10001", lambda: self.exec(inimage.python("-c", ask))[0] == 0,
                   timeout, every=1, gone=self.exited)

    def client_run(self, client: Container, script: str, *, stop: str) -> tuple[int, str, str]:
        """``script`` run in ``client``, a Ray Client of this head: exit code, output, and the Ray Client start
        failure it met ("" when none, or when it passed). One the head's log shows first stops it at once
        (``stop``, in the client), instead of after the 40 s the client takes to hear of it."""
        with self.client_start_failure(then=lambda: client.sh(stop)) as failed:
            code, out = client.sh(script)
        flake = next((f for f in CLIENT_START_FLAKES if f in out), "")
        if failed.is_set():  # with the last line the dead server wrote, if it wrote one: why it died
            said = self.exec(["sh", "-c", DIED_SAID])[1].strip()
            flake = f"{START_FAILED}: {said}" if said else START_FAILED
        return code, out, flake if code else ""

    @contextlib.contextmanager
    def client_start_failure(self, then: Callable[[], object]) -> Iterator[threading.Event]:
        """While the block runs, the head's Ray Client log is read once a second (in the head) for a client's
        server that died as it started: ``then()`` is called as soon as one does. The event says whether it did."""
        failed, mark = threading.Event(), f"/tmp/imagekit-watch-{secrets.token_hex(4)}"
        script = (f"echo $$ > {mark}.pid; n=$(cat {CLIENT_LOG} 2>/dev/null | wc -l); until tail -n +$((n + 1)) "
                  f"{CLIENT_LOG} 2>/dev/null | grep -q '{START_FAILED}'; do [ -e {mark}.stop ] && exit 3; "
                  f"sleep 1 >/dev/null 2>&1; done")

        def watch() -> None:
            if self.exec(["sh", "-c", script])[0] == 0:
                failed.set()
                then()
        watcher = threading.Thread(target=watch, name="ray-client-watch", daemon=True)
        watcher.start()
        try:
            yield failed
        finally:  # a watch not yet begun sees the stop file; one under way is ended
            self.exec(["sh", "-c", f"touch {mark}.stop; [ -s {mark}.pid ] && kill $(cat {mark}.pid)"])
            watcher.join(5)

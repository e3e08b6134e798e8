"""verify-stored: every model kept in the models bucket, checked in the candidate Ray image.

The host lists the meta.json keys (the lake may hold any number) and hands the list, as a file, to
``stored_check`` in a container of the candidate Ray image: on a Ray of its own (local), or as a Ray
Client driver of a cluster started from that image (``cluster``: ray://HOST:10001), whose tasks read
and check the models where they run. The outcomes come back as a file; each is compared here with
what the notebook predicted, by the rules verify-compat has.
"""
from __future__ import annotations

import contextlib
import io
import json
import secrets
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import docker

from imagekit import forward
from imagekit.engine import Engine
from imagekit.errors import EngineError, PreconditionError, UsageError
from imagekit.verify import s3store
from imagekit.verify.compare import compare

LIST, OUTCOMES = "/tmp/imagekit-models.txt", "/tmp/imagekit-outcomes.jsonl"  # where the ray user writes
BATCH_SIZE = 100


@dataclass(frozen=True)
class StoredModel:
    name: str  # <scenario>@<version>: where its meta.json is
    ok: bool
    reason: str
    fingerprint: list[str]  # where its training environment differs from the image's
    loaded: bool
    same_predictions: bool
    max_probability_diff: float | None
    warnings: list[str]
    node: str  # the Ray node (host name) that checked it
    reused: bool  # the outcome kept by an earlier run with this image
    seconds: float


@dataclass(frozen=True)
class StoredReport:
    s3_server: str
    ray_image: str  # the image id outcomes are kept under
    cluster: str  # the Ray address, "" for a Ray of its own in one container
    batch_size: int
    models: list[StoredModel]
    checked: int  # new outcomes
    reused: int
    nodes: list[str]
    seconds: float

    @property
    def ok(self) -> bool:
        return bool(self.models) and all(m.ok for m in self.models)


def judge(record: dict) -> StoredModel:
    """A model passes when it loads and predicts the same, in the environment it was trained in."""
    name = record["meta"].removesuffix("/meta.json").replace("/", "@")
    served, fingerprint = record.get("served") or {}, record.get("fingerprint") or []
    same, reason, diff = False, record.get("error") or "", None
    if record.get("loaded") and not reason:
        same, reason, diff = compare(record["expected"], served)
    elif reason and record.get("stage") in ("load", "predict"):
        reason = f"{'could not load in ray' if record['stage'] == 'load' else 'ray could not predict'}: {reason}"
    if not reason and fingerprint:
        reason = "trained and served in different environments: " + "; ".join(fingerprint)
    return StoredModel(name, same and not fingerprint, reason, fingerprint, bool(record.get("loaded")), same, diff,
                       served.get("warnings", []), record.get("node", ""), bool(record.get("reused")),
                       record.get("seconds", 0.0))


def check(ray: str, image_id: str, s3: s3store.S3Server | s3store.Endpoint, *, prefix: str = "",
          buckets: s3store.Buckets = s3store.Buckets(), batch_size: int = BATCH_SIZE, recheck: bool = False,
          cluster: str = "", cluster_s3: str = "", on_line: Callable[[str], None] | None = None) -> StoredReport:
    """Check every model under ``prefix`` of the models bucket in the Ray image ``ray``."""
    note = on_line or (lambda line: None)
    started = time.monotonic()
    if cluster and not isinstance(s3, s3store.Endpoint):
        raise UsageError("--ray-address needs --s3-endpoint: the cluster's tasks read the models from your S3",
                         option="--ray-address")
    forward.require_local(cluster, "the Ray address")
    with s3store.on_network() as (stack, network):
        store = s3store.open_store(stack, s3, network, note)
        keys = store.metas(buckets.models, prefix)
        if not keys:
            raise PreconditionError(f"no model with a meta.json under {buckets.models}/{prefix}",
                                    hint="publish models with verify-compat first (or check the prefix and bucket)")
        store.ensure(buckets.eval)
        inside = (cluster_s3 or store.url) if cluster else store.inside
        env = {**store.keys, "AWS_ENDPOINT_URL": inside, "IMAGEKIT_MODELS_BUCKET": buckets.models,
               "IMAGEKIT_EVAL_BUCKET": buckets.eval, **({"RAY_ADDRESS": cluster} if cluster else {})}
        c = stack.enter_context(checker(ray, network.name, env, host_network=bool(cluster)))
        if not cluster:
            s3store.reachable(c, inside, "the S3 server", store.url)
        note(f"checking {len(keys)} stored models in batches of {batch_size} "
             f"{'on the Ray cluster at ' + cluster if cluster else 'on a Ray of its own in the ray image'}")
        Engine.put(c, LIST, "\n".join(keys).encode())
        code, tail = stream(c, ["python", "-m", "stored_check", "--list", LIST, "--out", OUTCOMES, "--image",
                                 image_id, "--batch-size", str(batch_size), *(["--recheck"] if recheck else [])], note)
        if code != 0:
            why = fatal(code, tail)
            raise EngineError(f"the stored-model check stopped: {why}", hint=_hint(why, cluster))
        records = [json.loads(line) for line in read_text(c, OUTCOMES).splitlines() if line]
    models = sorted((judge(r) for r in records), key=lambda m: m.name)
    reused = sum(m.reused for m in models)
    return StoredReport(s3_server=s3store.describe(s3), ray_image=image_id, cluster=cluster, batch_size=batch_size,
                        models=models, checked=len(models) - reused, reused=reused,
                        nodes=sorted({m.node for m in models if m.node}), seconds=round(time.monotonic() - started, 1))


def _hint(fatal: str, cluster: str) -> str:
    if "No module named stored_check" in fatal:
        return "the Ray image predates imagekit's stored_check (release v13): pass a Ray image built by this imagekit"
    if "S3" in fatal:
        return "check the S3 server and run again: outcomes kept so far are reused"
    if "environment" in fatal or "stored_check" in fatal:
        return "start the cluster from the candidate Ray image (the RayJob manifest in the README)"
    if cluster:
        return f"check that the cluster answers at {cluster} (kubectl port-forward svc/<head> 10001)"
    return "run again with --verbose to see the check's output"


@contextlib.contextmanager
def checker(image: str, network: str, env: dict[str, str], *, host_network: bool):
    """An idle container of the Ray image (on the host's network when it drives a cluster: a
    port-forward on localhost is then reached as the user's shell reaches it)."""
    client = docker.from_env()
    where = {"network_mode": "host"} if host_network else {
        "network": network, "extra_hosts": {forward.HOST_ALIAS: "host-gateway"}}
    try:
        c = client.containers.run(image, ["sleep", "infinity"], detach=True, environment=env, shm_size="1g",
                                  name=f"imagekit-stored-{secrets.token_hex(4)}", **where)
    except docker.errors.DockerException as e:
        raise EngineError(f"cannot start the Ray image {image} for the check: {e}") from None
    try:
        yield c
    finally:
        with contextlib.suppress(docker.errors.DockerException):
            c.remove(force=True)


def stream(c, cmd: list[str], note, prefix: str = "stored_check: ") -> tuple[int, list[str]]:
    """Run ``cmd`` in ``c``, each progress line (``prefix``) to ``note``: exit code, the last lines of output."""
    api, tail, pending = c.client.api, [], ""
    run = api.exec_create(c.id, cmd)
    for chunk in api.exec_start(run["Id"], stream=True):
        pending += chunk.decode(errors="replace")
        *lines, pending = pending.split("\n")
        for line in lines:
            if line.startswith(prefix):
                note(line.removeprefix(prefix))
            tail = (tail + [line])[-40:]
    tail.append(pending)
    return api.exec_inspect(run["Id"])["ExitCode"], [t for t in tail if t.strip()]


def fatal(code: int, tail: list[str], prefix: str = "stored_check: ") -> str:
    """Why a check that exited ``code`` stopped: its "<prefix>fatal: " line, else the output's last line
    (an exception's last line, never its traceback)."""
    return next((line.split("fatal: ", 1)[1] for line in reversed(tail) if f"{prefix}fatal: " in line),
                (tail or [f"exit code {code}"])[-1])


def read_text(c, path: str) -> str:
    stream = Engine.get(c, path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        return tar.extractfile(tar.getmembers()[0]).read().decode()

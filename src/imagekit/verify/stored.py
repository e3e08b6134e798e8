"""verify-stored: every model kept in the models bucket, checked in the candidate Ray image.

The host lists the meta.json keys (the lake may hold any number) and hands the list, as a file, to
``stored_check`` in a container of the candidate Ray image: on a Ray of its own (local), or as a Ray
Client driver of a cluster started from that image (``cluster``: ray://HOST:10001), whose tasks read
and check the models where they run. The outcomes come back as a file; each is compared here with
what the notebook predicted, by the rules verify-compat has.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from imagekit import containers, forward, inimage, proc, services
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.errors import EngineError, PreconditionError, UsageError, infrastructure
from imagekit.verify import s3store
from imagekit.verify.compare import Models, compare
from imagekit.verify.subjects import subject

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
class StoredReport(Models):
    s3_server: str
    ray_image: str  # the image id outcomes are kept under
    cluster: str  # the Ray address, "" for a Ray of its own in one container
    batch_size: int
    models: list[StoredModel]
    checked: int  # new outcomes
    reused: int
    nodes: list[str]
    seconds: float


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


def check(engine: Engine, ray: str, image_id: str, s3: s3store.Server | s3store.Endpoint, *, prefix: str = "",
          buckets: s3store.Buckets = s3store.Buckets(), batch_size: int = BATCH_SIZE, recheck: bool = False,
          cluster: str = "", cluster_s3: str = "", on_line: Callable[[str], None] | None = None) -> StoredReport:
    """Check every model under ``prefix`` of the models bucket in the Ray image ``ray``."""
    note = on_line or (lambda line: None)
    started = time.monotonic()
    if cluster and not isinstance(s3, s3store.Endpoint):
        raise UsageError("--ray-address needs --s3-endpoint: the cluster's tasks read the models from your S3",
                         option="--ray-address")
    forward.require_local(cluster, "the Ray address")
    with containers.Run(engine, "verify-stored", note=note) as run:
        store = s3store.open_store(run, s3, note)
        keys = store.metas(buckets.models, prefix)
        if not keys:
            raise PreconditionError(f"no model with a meta.json under {buckets.models}/{prefix}",
                                    hint="publish models with verify-compat first (or check the prefix and bucket)")
        store.ensure(buckets.eval)
        inside = (cluster_s3 or store.url) if cluster else store.inside
        env = {**store.keys, "AWS_ENDPOINT_URL": inside, "IMAGEKIT_MODELS_BUCKET": buckets.models,
               "IMAGEKIT_EVAL_BUCKET": buckets.eval, **({"RAY_ADDRESS": cluster} if cluster else {})}
        c = checker(run, ray, env, host_network=bool(cluster))
        if not cluster:
            s3store.reachable(c, inside, "the S3 server", store.url)
        note(f"checking {len(keys)} stored models in batches of {batch_size} "
             f"{'on the Ray cluster at ' + cluster if cluster else 'on a Ray of its own in the ray image'}")
        c.put(LIST, "\n".join(keys).encode())
        code, tail = c.stream(c.python(
            "-m", "stored_check", "--list", LIST, "--out", OUTCOMES, "--image", image_id, "--batch-size",
            str(batch_size), *(["--recheck"] if recheck else []), path=inimage.SERVING_IN), note, "stored_check: ")
        if code != 0:
            why = proc.reason("\n".join(tail), prefix="stored_check: ") or f"exit code {code}"
            if "No module named" in why or why.startswith("imagekit:"):  # the image, not the engine
                raise PreconditionError(f"the Ray image {ray} cannot check stored models: {why}",
                                        hint="its Python needs ray, boto3 and the model libraries")
            raise EngineError(f"the stored-model check stopped: {why}", hint=_hint(why, cluster))
        records = [json.loads(line) for line in c.read(OUTCOMES).decode().splitlines() if line]
    models = sorted((judge(r) for r in records), key=lambda m: m.name)
    reused = sum(m.reused for m in models)
    return StoredReport(s3_server=s3store.describe(s3), ray_image=image_id, cluster=cluster, batch_size=batch_size,
                        models=models, checked=len(models) - reused, reused=reused,
                        nodes=sorted({m.node for m in models if m.node}), seconds=round(time.monotonic() - started, 1))


def _hint(fatal: str, cluster: str) -> str:
    if "S3" in fatal:
        return "check the S3 server and run again: outcomes kept so far are reused"
    if "environment" in fatal or "stored_check" in fatal:
        return "start the cluster from the candidate Ray image (the RayJob manifest in the README)"
    if cluster:
        return f"check that the cluster answers at {cluster} (kubectl port-forward svc/<head> 10001)"
    return "run again with --verbose to see the check's output"


def checker(run: containers.Run, image: str, env: dict[str, str], *, host_network: bool = False) -> services.Idle:
    """An idle container of the Ray image for an in-image check (on the host's network when it drives a
    cluster: a port-forward on localhost is then reached as the user's shell reaches it)."""
    return run.start(services.Idle(image, kind="Ray checker", env=env, shm="1g", files=inimage.serving(),
                                   network_mode="host" if host_network else None))


@infrastructure("verify-stored")
def verify_stored(cfg: Config, engine: Engine, *, ray: str | None = None, prefix: str = "",
                  s3_endpoint: str | None = None, ray_address: str | None = None, batch_size: int | None = None,
                  recheck: bool = False, on_line: Callable[[str], None] | None = None) -> StoredReport:
    """Every model already in the models bucket (under ``prefix``) with a meta.json, checked in the
    candidate Ray image: the regression check before a new Ray image is promoted."""
    note = on_line or (lambda line: None)
    batch_size = batch_size if batch_size is not None else cfg.verify.stored_batch_size
    if batch_size < 1:
        raise UsageError(f"a batch size of {batch_size}: it must be at least 1", option="--batch-size",
                         hint="models per task; 100 keeps one process under about 1 GiB with the example models")
    address = ray_address if ray_address is not None else cfg.verify.ray_address
    if address and not re.fullmatch(r"ray://[^/\s:]+:\d+", address):
        raise UsageError(f"--ray-address {address!r} is not a Ray Client address", option="--ray-address",
                         hint="ray://HOST:10001: the head's client server (kubectl port-forward svc/<head> 10001)")
    store = s3store.store_for(cfg, engine, s3_endpoint, note)
    server = subject(cfg, engine, "ray", ray)
    return check(engine, server.ref, engine.image(server.ref).id, store, prefix=prefix, buckets=s3store.buckets(cfg),
                 batch_size=batch_size, recheck=recheck, cluster=address, cluster_s3=cfg.verify.cluster_s3_endpoint,
                 on_line=note)

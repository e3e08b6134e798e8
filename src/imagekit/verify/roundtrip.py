"""Round trip: notebooks train and publish to S3, Ray Serve loads and answers.

One run (containers.py: its own network, every container removed afterwards, also on failure, on
Ctrl-C and on SIGTERM) holds the S3 store (s3store.py), the notebook image (executing the scenario
notebooks headless: every *.ipynb of verify.notebooks, named by its file stem, with the publishing
helper imagekit_publish.py put beside them) and the Ray image (serving every published model).
A notebook that imports mlflow is given a tracking server (tracking.py) and may log with the
plain MLflow API instead: the models it logged are found (imagekit_mlflow.py, in the notebook
image, which predicts their input examples there) and served by Ray Serve as MLflow models.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from imagekit import containers, inimage, proc, services
from imagekit.digests import sha256_hex
from imagekit.engine import Engine
from imagekit.errors import EngineError
from imagekit.verify import mlflowstore, tracking
from imagekit.verify.compare import compare
from imagekit.verify.s3store import Buckets, Endpoint, Server, Store, describe, open_store, reachable

NOTEBOOKS = "/tmp/imagekit-scenarios"  # not the home: any notebook image, whatever its user
HELPER = Path(__file__).parents[1] / "in_image" / "imagekit_publish.py"  # runs beside the notebooks
FINDER = HELPER.with_name("imagekit_mlflow.py")  # what an MLflow scenario logged, predicted where it was logged
AT_ONCE = 2  # notebooks executed at once in the trainer: each is one kernel, mostly one core


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    ok: bool
    reason: str
    max_probability_diff: float | None
    warnings: list[str]  # raised while the Ray image predicted (not failures)
    train_seconds: float
    serve_seconds: float
    fingerprint: list[str] = field(default_factory=list)  # where training and serving environments differ
    loaded: bool = False  # unpickled in the Ray image
    same_predictions: bool = False  # and answered what the notebook predicted
    mlflow: list[mlflowstore.Outcome] = field(default_factory=list)  # an MLflow scenario's logged models
    notebook_sha256: str = ""  # of the notebook as it was copied into the container: what ran


@dataclass(frozen=True)
class RoundtripReport:
    s3_server: str
    version: str  # the timestamp the models were published under
    scenarios: list[ScenarioResult]
    ray_startup_seconds: float
    seconds: float
    mlflow_server: str = ""  # the tracking server MLflow scenarios used ("" when none ran)

    @property
    def ok(self) -> bool:
        """At least one model checked, and every one passed."""
        return bool(self.scenarios) and all(s.ok for s in self.scenarios)


@dataclass(frozen=True)
class Trained:
    """A scenario notebook executed in the notebook image."""
    name: str
    seconds: float
    meta: dict | None  # what it published (meta.json), None when the notebook failed
    reason: str = ""
    logged: list[dict] = field(default_factory=list)  # an MLflow scenario's models, as imagekit_mlflow found them


@dataclass(frozen=True)
class Served:
    """A published model asked, in the Ray image, for the probe rows' predictions."""
    ok: bool
    reason: str
    diff: float | None
    warnings: list[str]
    seconds: float
    loaded: bool = True


def copied(folder: Path, names) -> dict[str, bytes]:
    """The bytes of notebooks ``names`` of ``folder``, read once: what is copied is what is hashed."""
    return {name: (folder / f"{name}.ipynb").read_bytes() for name in names}


def trainer(run: containers.Run, image: str, env: dict[str, str], notebooks: dict[str, bytes]) -> services.Idle:
    """The notebook image, idle, with the scenario notebooks (their bytes) and the helpers copied in
    (no bind mount: remote engines); it executes ``AT_ONCE`` notebooks at a time."""
    return run.start(services.Idle(image, kind="notebook trainer", alias="trainer", env=env),
                     inputs={**{f"{NOTEBOOKS}/{n}.ipynb": body for n, body in notebooks.items()},
                             **{f"{NOTEBOOKS}/{h.name}": h for h in (HELPER, FINDER)}})


def train(c: containers.Container, name: str, store: Store, bucket: str, version: str, mlflow: bool = False) -> Trained:
    """Execute scenario ``name`` in the trainer: what it published, or the MLflow models it logged."""
    started, run = time.monotonic(), f"{version}-{name}-{secrets.token_hex(4)}"  # what MLflow tags the notebook's runs with
    code, output = c.exec(c.python("-c", inimage.EXECUTE, f"{NOTEBOOKS}/{name}.ipynb", path=NOTEBOOKS),
                          env={"IMAGEKIT_SCENARIO": name, **tracking.run_context(run)})
    seconds = round(time.monotonic() - started, 1)
    if code != 0:
        at = proc.cell(output)
        return Trained(name, seconds, None, f"notebook failed: {proc.reason(output)}" + (f" (at {at})" if at else ""))
    try:
        return Trained(name, seconds, store.json(bucket, f"{name}/{version}/meta.json"))
    except store.client.exceptions.NoSuchKey:
        found = logged(c, run) if mlflow else []
        return Trained(name, seconds, None, "" if found else (
            f"the notebook published nothing under {bucket}/{name}/{version}/"
            f"{' and logged no MLflow model' if mlflow else ''}: it must call imagekit_publish.publish(model, "
            f"probe){' or log a model with MLflow' if mlflow else ''}"), found)


def logged(c: containers.Container, run: str) -> list[dict]:
    """The MLflow models the notebook run ``run`` logged (and nothing anyone else logged meanwhile)."""
    code, output = c.exec(c.python(f"{NOTEBOOKS}/{FINDER.name}", run))
    if code != 0:
        raise EngineError(f"the models an MLflow scenario logged cannot be listed: {proc.reason(output)}")
    return json.loads(output.strip().splitlines()[-1])


def schedule(scenarios: tuple[str, ...], uses_mlflow: set[str]) -> list[str]:
    """The order notebooks train in: ``AT_ONCE`` that do not use MLflow first, while its tracking server boots,
    then the MLflow ones (the longest: logging a model infers its requirements in a process of its own), the
    rest last, so that no long notebook is left running alone at the end."""
    plain = [name for name in scenarios if name not in uses_mlflow]
    return plain[:AT_ONCE] + [name for name in scenarios if name in uses_mlflow] + plain[AT_ONCE:]


def train_all(c: containers.Container, scenarios: tuple[str, ...], store: Store, bucket: str, version: str,
              uses_mlflow: set[str], note: Callable[[str], None], tracker: services.TrackingServer | None = None,
              trained: Callable[[Trained], None] = lambda t: None) -> dict[str, Trained]:
    """Every scenario executed in the trainer, ``AT_ONCE`` notebooks at a time, in ``schedule``'s order:
    {name: what it published}, each also given to ``trained`` (in this thread) as soon as it is. Those that
    use MLflow wait for the ``tracker`` (the run's tracking server)."""
    waited = threading.Lock()

    def one(name: str) -> Trained:
        if name in uses_mlflow and tracker:
            with waited:  # one thread waits; the next finds it answering
                tracker.ready(120)
        note(f"training {name} in the notebook image")
        return train(c, name, store, bucket, version, mlflow=name in uses_mlflow)
    pool, done = concurrent.futures.ThreadPoolExecutor(AT_ONCE, thread_name_prefix="train"), {}
    try:
        for future in concurrent.futures.as_completed([pool.submit(one, n) for n in schedule(scenarios, uses_mlflow)]):
            result = future.result()
            done[result.name] = result
            trained(result)
    finally:  # a failure or an interrupt waits for no other notebook: removing the trainer ends it
        pool.shutdown(wait=False, cancel_futures=True)
    return {name: done[name] for name in scenarios}


def serve(url: str, name: str, meta: dict, status: str) -> Served:
    """Ask the model server at ``url`` for model ``name``'s predictions of its probe rows."""
    started = time.monotonic()
    if status != "loaded":
        return Served(False, f"could not load in ray: {status}", None, [], 0.0, loaded=False)
    r = requests.post(f"{url}/models/{name}/predict", json={"instances": meta["instances"]}, timeout=60)
    if r.status_code != 200:
        return Served(False, f"ray answered {r.status_code}: {r.text[:300]}", None, [], 0.0)
    ok, reason, diff = compare(meta, r.json())
    return Served(ok, reason, diff, r.json().get("warnings", []), round(time.monotonic() - started, 2))


def serve_mlflow(url: str, name: str, models: list[dict], status: dict) -> tuple[list[mlflowstore.Outcome], float]:
    """Each model an MLflow scenario logged, asked its serving input example in MLflow's protocol."""
    started, found = time.monotonic(), []
    for i, m in enumerate(models):
        key, served = f"{name}.{i}", None
        state = status["models"].get(key, "not served")
        error = f"in the notebook image: {m['error']}" if m["error"] else (
            f"could not load in ray: {state}" if state != "loaded" else "")
        if not error and m["request"] is not None:
            r = requests.post(f"{url}/models/{key}/predict", json=m["request"], timeout=60)
            served, error = (r.json(), "") if r.status_code == 200 else (None, f"ray answered {r.status_code}: "
                                                                               f"{r.text[:300]}")
        registered = [f"{v['name']}/{v['version']}" for v in m["registered"]] + [
            f"{v['name']}@{a}" for v in m["registered"] for a in v["aliases"]]
        found.append(mlflowstore.judge(m["name"], m["uri"], registered, status.get("fingerprints", {}).get(key, []),
                                       loaded=state == "loaded", example=m["request"] is not None, error=error,
                                       expected=m["predictions"], served=served))
    return found, round(time.monotonic() - started, 2)


def spec(meta: dict) -> dict:
    return {k: meta[k] for k in ("bucket", "key", "sha256", "environment") if k in meta}


def to_serve(trained: dict[str, Trained]) -> dict[str, dict]:
    """The models the notebooks published or logged, as the model server takes them: {name: spec}."""
    return {**{n: spec(t.meta) for n, t in trained.items() if t.meta},
            **{f"{n}.{i}": {"mlflow": m["uri"]} for n, t in trained.items() for i, m in enumerate(t.logged)}}


def _result(name: str, served: Served, fingerprint: list[str], train_seconds: float) -> ScenarioResult:
    """A model passes when it loads and predicts the same, in the environment it was trained in."""
    reason = served.reason or ("trained and served in different environments: " + "; ".join(fingerprint)
                               if fingerprint else "")
    return ScenarioResult(name, served.ok and not fingerprint, reason, served.diff, served.warnings, train_seconds,
                          served.seconds, fingerprint, loaded=served.loaded, same_predictions=served.ok)


def _mlflow_result(name: str, outcomes: list[mlflowstore.Outcome], train_seconds: float,
                   serve_seconds: float) -> ScenarioResult:
    """An MLflow scenario passes when every model it logged does."""
    bad = [o for o in outcomes if not o.ok]
    diffs = [o.max_diff for o in outcomes if o.max_diff is not None]
    return ScenarioResult(name, not bad, "; ".join(f"model '{o.name}' ({o.uri}): {o.reason}" for o in bad),
                          max(diffs) if diffs else None, [], train_seconds, serve_seconds,
                          [f"{o.name}: {d}" for o in outcomes for d in o.differences],
                          loaded=all(o.loaded for o in outcomes),
                          same_predictions=all(o.same_predictions or not o.example for o in outcomes), mlflow=outcomes)


def run(engine: Engine, notebook: str, ray: str, s3: Server | Endpoint, notebooks: Path, *,
        scenarios: tuple[str, ...], buckets: Buckets = Buckets(), trained_in: dict[str, str] | None = None,
        mlflow: str | None = None, on_line: Callable[[str], None] | None = None,
        timeout: float = 300) -> RoundtripReport:
    """Train every scenario in the notebook image, publish to S3, serve each model in the Ray image (Ray Serve
    starts once the first model is published, and boots while the other notebooks train).
    ``trained_in``: IMAGEKIT_IMAGE and IMAGEKIT_LOCK, recorded in each model's fingerprint.
    ``mlflow``: the image of the tracking server to start for notebooks that import mlflow."""
    note = on_line or (lambda line: None)
    started = time.monotonic()
    version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    with containers.Run(engine, "verify", note=note) as r:
        store = open_store(r, s3, note)
        for bucket in (buckets.models, buckets.eval, *buckets.others):
            store.ensure(bucket)
        inside = {**store.keys, "AWS_ENDPOINT_URL": store.inside, "IMAGEKIT_MODELS_BUCKET": buckets.models,
                  **({"IMAGEKIT_RAW_BUCKET": buckets.others[0], "IMAGEKIT_SILVER_BUCKET": buckets.others[1]}
                     if len(buckets.others) >= 2 else {})}
        ran = copied(notebooks, scenarios)
        uses = {n for n in scenarios if tracking.uses_mlflow(ran[n])} if mlflow else set()
        described, to_mlflow, tracker = tracking.open_tracking(r, mlflow, store, note) if uses else ("", {}, None)
        if uses:  # the S3 variables too: a server that does not proxy artifacts has clients write them
            inside.update(to_mlflow, MLFLOW_S3_ENDPOINT_URL=store.inside)
        t = trainer(r, notebook, {**inside, **(trained_in or {}), "IMAGEKIT_RUN": version}, ran)
        reachable(t, store.inside, "the S3 server", store.url)
        server, t0 = None, 0.0

        def start_serving(models: dict[str, dict]) -> None:  # once: it boots while the other notebooks train
            nonlocal server, t0
            if server is None:
                note("starting Ray Serve in the ray image")
                t0, server = time.monotonic(), r.start(services.ModelServer(ray, inside, models))

        def published(one: Trained) -> None:
            if one.meta or one.logged:  # the first model published
                start_serving(to_serve({one.name: one}))
        trained = train_all(t, scenarios, store, buckets.models, version, uses, note, tracker, trained=published)
        start_serving({})  # when none was: its status then names no model
        server.add(to_serve(trained))
        status = server.ready(timeout)
        ray_startup = round(time.monotonic() - t0, 1)
        url, results = server.url(8000), []
        for name in scenarios:
            m = trained[name]
            if m.logged:
                note(f"serving {name}'s {len(m.logged)} MLflow model(s)")
                outcomes, seconds = serve_mlflow(url, name, m.logged, status)
                results.append(_mlflow_result(name, outcomes, m.seconds, seconds))
                continue
            if m.meta is None:
                results.append(ScenarioResult(name, False, m.reason, None, [], m.seconds, 0.0))
                continue
            note(f"serving {name}")
            results.append(_result(name, serve(url, name, m.meta, status["models"][name]),
                                   status.get("fingerprints", {}).get(name, []), m.seconds))
        results = [dataclasses.replace(s, notebook_sha256=sha256_hex(ran[s.name])) for s in results]
        report = RoundtripReport(s3_server=describe(s3), version=version, scenarios=results,
                                 ray_startup_seconds=ray_startup, seconds=round(time.monotonic() - started, 1),
                                 mlflow_server=described)
        store.client.put_object(Bucket=buckets.eval, Key=f"verify-compat/{version}/report.json",
                                Body=json.dumps(asdict(report), indent=1).encode())
        return report

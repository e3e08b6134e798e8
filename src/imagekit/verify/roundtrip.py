"""Round trip with Testcontainers: notebooks train and publish to S3, Ray Serve loads and answers.

One Docker network holds the S3 store (s3store.py), the notebook image (executing the scenario
notebooks headless: every *.ipynb of verify.notebooks, named by its file stem, with the publishing
helper imagekit_publish.py put beside them) and the Ray image (serving every published model).
A notebook that imports mlflow is given a tracking server (mlflowstore.py) and may log with the
plain MLflow API instead: the models it logged are found (imagekit_mlflow.py, in the notebook
image, which predicts their input examples there) and served by Ray Serve as MLflow models.
Every container and the network are removed afterwards, also on failure and on Ctrl-C.
"""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

from imagekit import redact
from imagekit.errors import EngineError
from imagekit.forward import HOST_ALIAS
from imagekit.verify import mlflowstore
from imagekit.verify.compare import compare
from imagekit.verify.s3store import S3, Buckets, Endpoint, S3Server, describe, on_network, open_store, reachable, until

NOTEBOOKS = "/tmp/imagekit-scenarios"  # not the home: any notebook image, whatever its user
HELPER = Path(__file__).parents[1] / "in_image" / "imagekit_publish.py"  # runs beside the notebooks
FINDER = HELPER.with_name("imagekit_mlflow.py")  # what an MLflow scenario logged, predicted where it was logged


def discover(folder: Path) -> tuple[str, ...]:
    """The scenarios: every notebook in ``folder``, by file stem."""
    return tuple(sorted(p.stem for p in folder.glob("*.ipynb")))


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


def _host_gateway(container) -> None:
    container.with_kwargs(extra_hosts={HOST_ALIAS: "host-gateway"})


class Trainer(contextlib.AbstractContextManager):
    """The notebook image, idle, with the scenario notebooks and the publishing helper copied in;
    executes one at a time."""

    def __init__(self, image: str, network, env: dict[str, str], notebooks: Path) -> None:
        from testcontainers.core.container import DockerContainer

        self.container = DockerContainer(image).with_command(["sleep", "infinity"]).with_network(network)
        _host_gateway(self.container)
        for k, v in {**env, "PYTHONPATH": NOTEBOOKS}.items():
            self.container.with_env(k, v)
        self.notebooks = notebooks

    def __enter__(self) -> "Trainer":
        self.container.start()
        from imagekit.engine import Engine
        c = self.container.get_wrapped_container()
        Engine.put(c, NOTEBOOKS, self.notebooks)  # no bind mount: remote engines
        for helper in (HELPER, FINDER):
            Engine.put(c, f"{NOTEBOOKS}/{helper.name}", helper)
        return self

    def __exit__(self, *exc) -> None:
        self.container.stop()

    def train(self, name: str, s3: S3, bucket: str, version: str, mlflow: bool = False) -> Trained:
        started, since = time.monotonic(), int(time.time() * 1000)
        code, output = self.container.exec(["env", f"IMAGEKIT_SCENARIO={name}", "jupyter", "nbconvert", "--to",
                                            "notebook", "--execute", "--output-dir", "/tmp/executed",
                                            f"{NOTEBOOKS}/{name}.ipynb"])
        seconds = round(time.monotonic() - started, 1)
        if code != 0:
            return Trained(name, seconds, None, "notebook failed: " + _last_error(output.decode(errors="replace")))
        try:
            return Trained(name, seconds, s3.json(bucket, f"{name}/{version}/meta.json"))
        except s3.client.exceptions.NoSuchKey:
            logged = self.logged(since) if mlflow else []
            return Trained(name, seconds, None, "" if logged else (
                f"the notebook published nothing under {bucket}/{name}/{version}/"
                f"{' and logged no MLflow model' if mlflow else ''}: it must call imagekit_publish.publish(model, "
                f"probe){' or log a model with MLflow' if mlflow else ''}"), logged)

    def logged(self, since: int) -> list[dict]:
        code, output = self.container.exec(["python", f"{NOTEBOOKS}/{FINDER.name}", str(since)])
        text = output.decode(errors="replace")
        if code != 0:
            raise EngineError(f"the models an MLflow scenario logged cannot be listed: {_last_error(text)}")
        return json.loads(text.strip().splitlines()[-1])


class Server(contextlib.AbstractContextManager):
    """The Ray image serving the published models with Ray Serve (its default command)."""

    def __init__(self, image: str, network, env: dict[str, str], models: dict[str, dict]) -> None:
        from testcontainers.core.container import DockerContainer

        self.container = DockerContainer(image).with_network(network).with_exposed_ports(8000) \
            .with_kwargs(shm_size="1g", extra_hosts={HOST_ALIAS: "host-gateway"}) \
            .with_env("IMAGEKIT_MODELS", json.dumps(models))
        for k, v in env.items():
            self.container.with_env(k, v)
        self.models = models

    def __enter__(self) -> "Server":
        self.container.start()
        c = self.container
        self.url = f"http://{c.get_container_host_ip()}:{c.get_exposed_port(8000)}"
        return self

    def __exit__(self, *exc) -> None:
        self.container.stop()

    def wait_ready(self, seconds: float) -> dict:
        """/status once the server knows every model: {"models": {name: status}, "fingerprints": ...}."""
        logs = lambda: self.container.get_wrapped_container().logs()[-3000:].decode(errors="replace")  # noqa: E731
        return until(lambda: _status(self.url, self.models), seconds, "Ray Serve did not come up", logs=logs)

    def serve(self, name: str, meta: dict, status: str) -> Served:
        started = time.monotonic()
        if status != "loaded":
            return Served(False, f"could not load in ray: {status}", None, [], 0.0, loaded=False)
        r = requests.post(f"{self.url}/models/{name}/predict", json={"instances": meta["instances"]}, timeout=60)
        if r.status_code != 200:
            return Served(False, f"ray answered {r.status_code}: {r.text[:300]}", None, [], 0.0)
        ok, reason, diff = compare(meta, r.json())
        return Served(ok, reason, diff, r.json().get("warnings", []), round(time.monotonic() - started, 2))

    def serve_mlflow(self, name: str, logged: list[dict], status: dict) -> tuple[list[mlflowstore.Outcome], float]:
        """Each model an MLflow scenario logged, asked its serving input example in MLflow's protocol."""
        started, found = time.monotonic(), []
        for i, m in enumerate(logged):
            key, served = f"{name}.{i}", None
            state = status["models"].get(key, "not served")
            error = f"in the notebook image: {m['error']}" if m["error"] else (
                f"could not load in ray: {state}" if state != "loaded" else "")
            if not error and m["request"] is not None:
                r = requests.post(f"{self.url}/models/{key}/predict", json=m["request"], timeout=60)
                served, error = (r.json(), "") if r.status_code == 200 else (None, f"ray answered {r.status_code}: "
                                                                                   f"{r.text[:300]}")
            registered = [f"{v['name']}/{v['version']}" for v in m["registered"]] + [
                f"{v['name']}@{a}" for v in m["registered"] for a in v["aliases"]]
            found.append(mlflowstore.judge(m["name"], m["uri"], registered, status.get("fingerprints", {}).get(key, []),
                                           loaded=state == "loaded", example=m["request"] is not None, error=error,
                                           expected=m["predictions"], served=served))
        return found, round(time.monotonic() - started, 2)

    def shutdown(self) -> None:
        self.container.exec(["serve", "shutdown", "-y"])


def spec(meta: dict) -> dict:
    return {k: meta[k] for k in ("bucket", "key", "sha256", "environment") if k in meta}


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


def run(notebook: str, ray: str, s3: S3Server | Endpoint, notebooks: Path, *, scenarios: tuple[str, ...],
        buckets: Buckets = Buckets(), trained_in: dict[str, str] | None = None,
        mlflow: mlflowstore.Tracking | str | None = None,
        on_line: Callable[[str], None] | None = None, timeout: float = 300) -> RoundtripReport:
    """Train every scenario in the notebook image, publish to S3, serve each model in the Ray image.
    ``trained_in``: IMAGEKIT_IMAGE and IMAGEKIT_LOCK, recorded in each model's fingerprint.
    ``mlflow``: the team's tracking server, or the image of one to start, for notebooks that import mlflow."""
    note = on_line or (lambda line: None)
    started = time.monotonic()
    version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    with on_network() as (stack, network):
        store = open_store(stack, s3, network, note)
        for bucket in (buckets.models, buckets.eval, *buckets.others):
            store.ensure(bucket)
        inside = {**store.keys, "AWS_ENDPOINT_URL": store.inside, "IMAGEKIT_MODELS_BUCKET": buckets.models,
                  **({"IMAGEKIT_RAW_BUCKET": buckets.others[0], "IMAGEKIT_SILVER_BUCKET": buckets.others[1]}
                     if len(buckets.others) >= 2 else {})}
        uses = {n for n in scenarios if mlflowstore.uses_mlflow(notebooks / f"{n}.ipynb")} if mlflow else set()
        tracking, to_mlflow = mlflowstore.open_tracking(stack, mlflow, network, store, note) if uses else ("", {})
        if uses:  # the S3 variables too: a server that does not proxy artifacts has clients write them
            inside.update(to_mlflow, MLFLOW_S3_ENDPOINT_URL=store.inside)
        trainer = stack.enter_context(Trainer(notebook, network, {**inside, **(trained_in or {}),
                                                                  "IMAGEKIT_RUN": version}, notebooks))
        reachable(trainer.container.get_wrapped_container(), store.inside, "the S3 server", store.url)
        trained = {}
        for name in scenarios:
            note(f"training {name} in the notebook image")
            trained[name] = trainer.train(name, store, buckets.models, version, mlflow=name in uses)
        models = {n: spec(t.meta) for n, t in trained.items() if t.meta}
        models.update({f"{n}.{i}": {"mlflow": m["uri"]} for n, t in trained.items() for i, m in enumerate(t.logged)})
        note("starting Ray Serve in the ray image")
        t0 = time.monotonic()
        server = stack.enter_context(Server(ray, network, inside, models))
        status = server.wait_ready(timeout)
        ray_startup = round(time.monotonic() - t0, 1)
        results = []
        for name in scenarios:
            t = trained[name]
            if t.logged:
                note(f"serving {name}'s {len(t.logged)} MLflow model(s)")
                outcomes, seconds = server.serve_mlflow(name, t.logged, status)
                results.append(_mlflow_result(name, outcomes, t.seconds, seconds))
                continue
            if t.meta is None:
                results.append(ScenarioResult(name, False, t.reason, None, [], t.seconds, 0.0))
                continue
            note(f"serving {name}")
            results.append(_result(name, server.serve(name, t.meta, status["models"][name]),
                                   status.get("fingerprints", {}).get(name, []), t.seconds))
        note("shutting the Ray Serve deployment down")
        server.shutdown()
        report = RoundtripReport(s3_server=describe(s3), version=version, scenarios=results,
                                 ray_startup_seconds=ray_startup, seconds=round(time.monotonic() - started, 1),
                                 mlflow_server=tracking)
        store.client.put_object(Bucket=buckets.eval, Key=f"verify-compat/{version}/report.json",
                                Body=json.dumps(asdict(report), indent=1).encode())
        return report


def _status(base_url: str, models: dict) -> dict | None:
    try:
        r = requests.get(f"{base_url}/status", timeout=2)
    except requests.RequestException:
        return None
    found = r.json() if r.status_code == 200 else {}
    return found if set(found.get("models", {})) >= set(models) else None


def _last_error(output: str) -> str:
    lines = [line for line in redact.plain(output).strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["no output"])[-1][:400]

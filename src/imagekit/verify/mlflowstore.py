"""MLflow, the platform's model store: its tracking server for a run, and what MLflow models do in
the Ray images.

The tracking server is the team's own (--mlflow-uri / verify.mlflow_uri; credentials
MLFLOW_TRACKING_USERNAME and _PASSWORD, or MLFLOW_TRACKING_TOKEN, handed to containers in their
environment only) or, for verify-compat, one started on the run's network from the built `mlflow`
image (SQLite, artifacts proxied to the run's S3 bucket mlflow-artifacts) as the S3 stand-in is.
In the Ray image, models are checked by its mlflowcheck: requirements.txt and python_env.yaml
against the image before loading, mlflow.pyfunc, MLflow's scoring protocol on the input example.
"""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from imagekit import forward, redact
from imagekit.errors import PreconditionError, UsageError
from imagekit.verify import s3store
from imagekit.verify.compare import compare

CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
ARTIFACTS = "mlflow-artifacts"  # the seed's bucket
# What MLflow's clients in the containers are given: a dead server said soon; artifacts through the tracking
# server, never by the presigned S3 URLs a 3.x server offers (an S3 address of the server's, which a
# port-forward's user cannot reach)
CLIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
          "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false", "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false"}
OUTCOMES = "/tmp/imagekit-mlflow.jsonl"


@dataclass(frozen=True)
class Tracking:
    """The team's MLflow tracking server."""
    url: str
    credentials: dict[str, str] = field(default_factory=dict, repr=False)


def tracking(url: str, env: dict[str, str]) -> Tracking:
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
        raise UsageError(f"{url!r} is not an MLflow tracking server's URL", option="--mlflow-uri",
                         hint="http(s)://HOST[:PORT], e.g. http://127.0.0.1:5000 after "
                              "`kubectl port-forward svc/mlflow 5000`")
    found = {k: env[k] for k in CREDENTIALS if env.get(k)}
    for k in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        if k in found:
            redact.register(found[k])
    forward.require_local(url, "the MLflow tracking server")
    return Tracking(url.rstrip("/"), found)


def preflight(t: Tracking) -> None:
    """The server answers as MLflow does, with these credentials; else a clear error before any work."""
    token = t.credentials.get("MLFLOW_TRACKING_TOKEN")
    user, password = t.credentials.get("MLFLOW_TRACKING_USERNAME"), t.credentials.get("MLFLOW_TRACKING_PASSWORD", "")
    try:
        r = requests.get(f"{t.url}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=10,
                         auth=(user, password) if user and not token else None,
                         headers={"Authorization": f"Bearer {token}"} if token else {})
    except requests.RequestException as e:
        raise PreconditionError(f"the MLflow tracking server {t.url} does not answer: {type(e).__name__}",
                                hint="check the URL; for a port-forward (kubectl port-forward svc/mlflow 5000), "
                                     "that it is still running") from None
    if r.status_code in (401, 403):
        raise PreconditionError(f"the MLflow tracking server {t.url} refused the request (HTTP {r.status_code})",
                                hint="set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
                                     "MLFLOW_TRACKING_TOKEN")
    try:
        answered = r.status_code == 200 and "experiments" in r.json()
    except ValueError:
        answered = False
    if not answered:
        raise PreconditionError(f"{t.url} does not answer as an MLflow tracking server (HTTP {r.status_code} to "
                                f"/api/2.0/mlflow/experiments/search: {redact.plain(r.text)[:120]!r})",
                                hint="give the tracking server's base URL, the one MLFLOW_TRACKING_URI holds")


def uses_mlflow(notebook: Path) -> bool:
    """A scenario notebook whose code imports MLflow (it is given a tracking server)."""
    cells = json.loads(notebook.read_text()).get("cells", [])
    code = "".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")
    return re.search(r"^\s*(import|from)\s+mlflow\b", code, re.M) is not None


def open_tracking(stack, mlflow: Tracking | str, network, store: s3store.S3, note) -> tuple[str, dict[str, str]]:
    """(a description, what containers on ``network`` are given to reach the tracking server):
    the team's (relayed when on the loopback), or the image ``mlflow`` started with ``store``."""
    if isinstance(mlflow, Tracking):  # asked whether it answers by the caller, before any container
        inside = s3store.relay(stack, mlflow.url, "the MLflow tracking server", note)
        return f"endpoint {mlflow.url}", {"MLFLOW_TRACKING_URI": inside, **mlflow.credentials, **CLIENT}
    note("starting the MLflow tracking server")
    start_server(stack, mlflow, network, store)
    return f"started {mlflow} (SQLite, artifacts in {ARTIFACTS})", {"MLFLOW_TRACKING_URI": "http://mlflow:5000",
                                                                   **CLIENT}


def start_server(stack, image: str, network, store: s3store.S3, env: dict[str, str] | None = None) -> str:
    """The tracking server ``image`` on ``network`` (as ``mlflow:5000``), its artifacts in ``store``'s
    bucket mlflow-artifacts, ``env`` added (MLFLOW_BACKEND_STORE_URI: another backend store); its URL
    from this machine (a published port on the loopback, as a port-forward's), once it answers."""
    from testcontainers.core.container import DockerContainer

    store.ensure(ARTIFACTS)
    server = DockerContainer(image).with_network(network).with_network_aliases("mlflow").with_exposed_ports(5000) \
        .with_kwargs(extra_hosts={forward.HOST_ALIAS: "host-gateway"})
    for k, v in {**store.keys, "MLFLOW_S3_ENDPOINT_URL": store.inside, **(env or {})}.items():
        server.with_env(k, v)
    stack.enter_context(server)
    url = f"http://127.0.0.1:{server.get_exposed_port(5000)}"
    s3store.until(lambda: _ok(f"{url}/health"), 120, "the MLflow tracking server did not answer",
                  logs=lambda: server.get_wrapped_container().logs()[-2000:].decode(errors="replace"))
    return url


def _ok(url: str) -> bool | None:
    try:
        return requests.get(url, timeout=2).ok or None
    except requests.RequestException:
        return None


@dataclass(frozen=True)
class Outcome:
    """An MLflow model as the Ray image treated it, against what it is compared with."""
    name: str  # the logged model's name, or NAME/VERSION of a registered one
    uri: str
    registered: list[str]  # "NAME/VERSION" and "NAME@ALIAS" pointing at it
    differences: list[str]  # its requirements.txt and python_env.yaml against the Ray image
    loaded: bool
    example: bool  # it has an input example (without one: checked for loading only)
    same_predictions: bool
    max_diff: float | None
    reason: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.loaded and not self.differences and not self.reason


def judge(name: str, uri: str, registered: list[str], differences: list[str], *, loaded: bool, example: bool,
          error: str, expected, served, seconds: float = 0.0, against: str = "the notebook") -> Outcome:
    """``served`` ({"predictions"}) against ``expected`` (a list; None: nothing to compare with)."""
    same, diff, reason = False, None, error
    if not error and example and served is not None and expected is not None:
        same, why, diff = compare({"labels": expected, "probabilities": None},
                                  {"labels": served.get("predictions"), "probabilities": None})
        reason = why.replace("notebook vs ray", f"{against} vs ray") if why else ""
    if not reason and differences:
        reason = "logged for another environment than the Ray image's: " + "; ".join(differences)
    return Outcome(name, uri, registered, differences, loaded, example, same, diff, reason, seconds)


def note_of(o: Outcome, compared: bool = True) -> str:
    if o.loaded and not o.example:
        return "checked for loading only: logged without an input example"
    return "" if compared else "not compared: the baseline could not predict it"


@dataclass(frozen=True)
class RegistryModel:
    """A registered version in the candidate Ray image, against the baseline Ray image."""
    candidate: Outcome
    baseline_error: str  # what the baseline could not do ("" when it loaded and predicted)
    aliases: list[str]
    note: str  # what was not checked, and why

    @property
    def ok(self) -> bool:
        return self.candidate.ok


@dataclass(frozen=True)
class RegistryReport:
    tracking: str
    ray_image: str
    baseline_image: str
    models: list[RegistryModel]
    seconds: float

    @property
    def ok(self) -> bool:
        return bool(self.models) and all(m.ok for m in self.models)


def _run(image: str, network, env: dict[str, str], models: list[str], note) -> list[dict]:
    from imagekit.verify import stored

    with stored.checker(image, network.name, env, host_network=False) as c:
        code, tail = stored.stream(c, ["python", "-m", "mlflowcheck", "--out", OUTCOMES, *models], note,
                                    prefix="mlflowcheck: ")
        if code != 0:
            fatal = stored.fatal(code, tail, prefix="mlflowcheck: ")
            if "No module named mlflowcheck" in fatal:
                raise PreconditionError(f"{image} has no mlflowcheck: a Ray image built before imagekit's release v15",
                                        hint="pass a Ray image built by this imagekit")
            raise PreconditionError(f"the MLflow registry cannot be read from the Ray image: {fatal}",
                                    hint="check the model names (NAME, NAME@ALIAS or NAME/VERSION) and the server")
        return [json.loads(line) for line in stored.read_text(c, OUTCOMES).splitlines() if line]


def check_registry(ray: str, baseline: str, mlflow: Tracking, models: list[str], *, s3_env: dict[str, str],
                   on_line: Callable[[str], None] | None = None) -> RegistryReport:
    """Every registered version ``models`` names (none: all), in ``ray`` and in ``baseline``: the
    requirement differences, whether it loads, whether it predicts its input example as the baseline.
    The server is asked first (preflight) by the caller."""
    note = on_line or (lambda line: None)
    started = time.monotonic()
    with s3store.on_network() as (stack, network):
        inside = s3store.relay(stack, mlflow.url, "the MLflow tracking server", note)
        env = {"MLFLOW_TRACKING_URI": inside, **mlflow.credentials, **CLIENT, **s3_env}
        note(f"checking MLflow models in the candidate Ray image {ray}")
        candidate = _run(ray, network, env, models, note)
        if not candidate:
            raise PreconditionError(f"no registered model version in the MLflow tracking server {mlflow.url}"
                                    + (f" for {', '.join(models)}" if models else ""),
                                    hint="register models (mlflow.register_model) or check the names")
        note(f"checking them in the baseline Ray image {baseline}")
        base = {r["uri"]: r for r in _run(baseline, network, env, [r["uri"].removeprefix("models:/")
                                                                    for r in candidate], note)}
    found = []
    for r in candidate:
        b = base.get(r["uri"], {})
        base_error = _stage(b) if b else "not checked"
        expected = (b.get("served") or {}).get("predictions")
        outcome = judge(f"{r['name']}/{r['version']}", r["uri"], [f"{r['name']}@{a}" for a in r["aliases"]],
                        r["differences"], loaded=r["loaded"], example=r["example"], error=_stage(r),
                        expected=expected, served=r.get("served"), seconds=r.get("seconds", 0.0),
                        against="the baseline")
        found.append(RegistryModel(outcome, base_error, r["aliases"],
                                   note_of(outcome, compared=expected is not None or not r["example"])))
    return RegistryReport(tracking=mlflow.url, ray_image=ray, baseline_image=baseline, models=found,
                          seconds=round(time.monotonic() - started, 1))


def _stage(record: dict) -> str:
    if not record.get("error"):
        return ""
    return {"download": "download failed", "load": "could not load in ray", "predict": "ray could not predict"}[
        record["stage"]] + f": {record['error']}"

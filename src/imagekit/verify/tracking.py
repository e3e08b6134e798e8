"""MLflow's tracking servers: the team's own, which verify-stored reads (--mlflow-uri /
verify.mlflow_uri; credentials MLFLOW_TRACKING_USERNAME and _PASSWORD, or MLFLOW_TRACKING_TOKEN,
handed to containers in their environment only), asked first whether it answers; and, for
verify-compat's MLflow scenarios, one of the run's own started from the built `mlflow` image (SQLite,
artifacts proxied to the run's S3 bucket mlflow-artifacts), so a verification never changes the team's
registry. And which scenario notebooks use MLflow, and how the models a notebook logged are found.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from imagekit import containers, forward, redact, services
from imagekit.errors import PreconditionError, UsageError
from imagekit.verify import s3store

CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
ARTIFACTS = "mlflow-artifacts"  # the seed's bucket
# What MLflow's clients in the containers are given: a dead server said soon; artifacts through the tracking
# server, never by the presigned S3 URLs a 3.x server offers (an S3 address of the server's, which a
# port-forward's user cannot reach); no usage telemetry (MLflow 3 sends it from a thread of every client:
# calls out of an offline CI, and its session variable once failed a notebook with KeyError)
CLIENT = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
          "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false", "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
          "MLFLOW_DISABLE_TELEMETRY": "true"}


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


def uses_mlflow(notebook: Path | bytes) -> bool:
    """A scenario notebook (its file, or its bytes) whose code imports MLflow (it is given a tracking server)."""
    cells = json.loads(notebook.read_bytes() if isinstance(notebook, Path) else notebook).get("cells", [])
    code = "".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "code")
    return re.search(r"^\s*(import|from)\s+mlflow\b", code, re.M) is not None


def open_tracking(run: containers.Run, mlflow: str, store: s3store.Store, note: Callable[[str], None]
                  ) -> tuple[str, dict[str, str], services.TrackingServer]:
    """(a description, what containers of the run are given to reach it, the server: started, not yet
    waited for): the tracking server of the run's own, the image ``mlflow`` started with ``store``. The
    team's tracking server is never where a verification logs: what it registers and the aliases it
    moves (the `champion` a RayService serves) would change what the team serves."""
    note("starting the MLflow tracking server")
    server = start_server(run, mlflow, store, ready=None)
    return f"started {mlflow} (SQLite, artifacts in {ARTIFACTS})", {"MLFLOW_TRACKING_URI": "http://mlflow:5000",
                                                                   **CLIENT}, server


def run_context(run: str) -> dict[str, str]:
    """The environment that makes MLflow tag every run and logged model a notebook creates with
    imagekit_run=``run`` (MLflow's MLFLOW_RUN_CONTEXT): how the models a notebook logged are found,
    whoever else logs on the same server meanwhile."""
    return {"MLFLOW_RUN_CONTEXT": json.dumps({"imagekit_run": run})}


def start_server(run: containers.Run, image: str, store: s3store.Store, env: dict[str, str] | None = None, *,
                 ready: float | None = 120) -> services.TrackingServer:
    """The tracking server ``image`` in the run (as ``mlflow:5000``), its artifacts in ``store``'s bucket
    mlflow-artifacts, ``env`` added (MLFLOW_BACKEND_STORE_URI: another backend store); waited for ``ready``
    seconds at most (None: not waited for)."""
    store.ensure(ARTIFACTS)
    return run.start(services.TrackingServer(image, {**store.keys, "MLFLOW_S3_ENDPOINT_URL": store.inside,
                                                     **(env or {})}), ready=ready)

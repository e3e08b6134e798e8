"""MLflow models in the Ray images: how one is judged (its requirements.txt and python_env.yaml against
the image, loads with mlflow.pyfunc, predicts its input example as it should), and verify-stored's
check of a registry: every registered version in the candidate Ray image and in a baseline one (what
prod serves), by the Ray image's own mlflowcheck."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from imagekit import containers, inimage, inventory, proc
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.errors import PreconditionError, UsageError, infrastructure
from imagekit.verify import s3store, tracking
from imagekit.verify.compare import Models, compare
from imagekit.verify.stored import checker
from imagekit.verify.subjects import subject

OUTCOMES = "/tmp/imagekit-mlflow.jsonl"


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
class RegistryReport(Models):
    tracking: str
    ray_image: str
    baseline_image: str
    models: list[RegistryModel]
    seconds: float


def _check_in(run: containers.Run, image: str, env: dict[str, str], models: list[str], note) -> list[dict]:
    c = checker(run, image, env)
    code, tail = c.stream(c.python("-m", "mlflowcheck", "--out", OUTCOMES, *models, path=inimage.SERVING_IN), note,
                          "mlflowcheck: ")
    if code != 0:
        fatal = proc.reason("\n".join(tail), prefix="mlflowcheck: ") or f"exit code {code}"
        if "No module named" in fatal:
            raise PreconditionError(f"the Ray image {image} cannot check MLflow models: {fatal}",
                                    hint="its Python needs mlflow (mlflow-skinny) and ray to load MLflow models")
        raise PreconditionError(f"the MLflow registry cannot be read from the Ray image: {fatal}",
                                hint="check the model names (NAME, NAME@ALIAS or NAME/VERSION) and the server")
    return [json.loads(line) for line in c.read(OUTCOMES).decode().splitlines() if line]


def check_registry(engine: Engine, ray: str, baseline: str, mlflow: tracking.Tracking, models: list[str], *,
                   s3_env: dict[str, str], on_line: Callable[[str], None] | None = None) -> RegistryReport:
    """Every registered version ``models`` names (none: all), in ``ray`` and in ``baseline``: the
    requirement differences, whether it loads, whether it predicts its input example as the baseline.
    The server is asked first (preflight) by the caller."""
    note = on_line or (lambda line: None)
    started = time.monotonic()
    with containers.Run(engine, "verify-mlflow", note=note) as run:
        inside = s3store.relay(run, mlflow.url, "the MLflow tracking server", note)
        env = {"MLFLOW_TRACKING_URI": inside, **mlflow.credentials, **tracking.CLIENT, **s3_env}
        note(f"checking MLflow models in the candidate Ray image {ray}")
        candidate = _check_in(run, ray, env, models, note)
        if not candidate:
            raise PreconditionError(f"no registered model version in the MLflow tracking server {mlflow.url}"
                                    + (f" for {', '.join(models)}" if models else ""),
                                    hint="register models (mlflow.register_model) or check the names")
        note(f"checking them in the baseline Ray image {baseline}")
        base = {r["uri"]: r for r in _check_in(run, baseline, env, [r["uri"].removeprefix("models:/")
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


def baseline_ray(cfg: Config) -> str:
    """The Ray image `current` in the last environment: what prod serves today."""
    env = cfg.environments[-1]
    reg = inventory.registry_for(cfg, env)
    digest = inventory.currents(cfg, reg, env, [cfg.verify.server])[cfg.verify.server]
    if not digest:
        raise PreconditionError(f"{env.name} serves no Ray image yet (nothing under its current tag)",
                                hint="pass --baseline-image REF: the Ray image to compare the candidate with")
    return f"{reg.host}/{inventory.repo(cfg, env, cfg.verify.server)}@{digest}"


@infrastructure("verify-stored")
def verify_mlflow(cfg: Config, engine: Engine, *, ray: str | None = None, baseline: str | None = None,
                  mlflow_uri: str | None = None, models: tuple[str, ...] = (), s3_endpoint: str | None = None,
                  on_line: Callable[[str], None] | None = None) -> RegistryReport:
    """Every registered MLflow model version (or those ``models`` names: NAME, NAME@ALIAS,
    NAME/VERSION) in the candidate Ray image and in the baseline one (default: what prod serves)."""
    url = mlflow_uri or cfg.verify.mlflow_uri
    if not url:
        raise UsageError("--model needs an MLflow tracking server", option="--mlflow-uri",
                         hint="pass --mlflow-uri URL or set verify.mlflow_uri")
    bad = [m for m in models if not re.fullmatch(r"[^@/\s]+(@[\w-]+|/\d+)?", m)]
    if bad:
        raise UsageError(f"{', '.join(map(repr, bad))}: name a model as NAME, NAME@ALIAS or NAME/VERSION",
                         option="--model")
    mlflow = tracking.tracking(url, cfg.env)
    tracking.preflight(mlflow)  # before any image is pulled or started
    s3_env, s3_url = {}, s3_endpoint or cfg.verify.s3_endpoint
    if s3_url:  # for a server that does not proxy artifacts
        ep = s3store.endpoint(cfg, s3_url)
        s3_env = {"AWS_ACCESS_KEY_ID": ep.access_key, "AWS_SECRET_ACCESS_KEY": ep.secret_key,
                  "MLFLOW_S3_ENDPOINT_URL": ep.url}
    candidate = subject(cfg, engine, "ray", ray)
    base = subject(cfg, engine, "ray", baseline or baseline_ray(cfg))
    return check_registry(engine, candidate.ref, base.ref, mlflow, list(models), s3_env=s3_env, on_line=on_line)

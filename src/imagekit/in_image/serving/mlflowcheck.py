"""How an MLflow model is checked in this image, shared by the model server and verify-stored:
the model's own requirements (requirements.txt, python_env.yaml) compared with this image's
distributions and Python before loading (MLflow only warns; here every difference is named),
loading with mlflow.pyfunc with every warning an error, and the answer MLflow's scoring server
would give for the model's serving input example. Runs inside the Ray image only.

    python -m mlflowcheck --out FILE [MODEL ...]

MODEL is NAME (every version), NAME@ALIAS or NAME/VERSION; none: every registered version.
The tracking server is MLFLOW_TRACKING_URI (credentials: MLFLOW_TRACKING_USERNAME/_PASSWORD or
MLFLOW_TRACKING_TOKEN). Out: one JSON object per model version (see check). Progress lines on stdout
start with "mlflowcheck:"; a failure of the run itself is "mlflowcheck: fatal: <reason>", exit 3.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement

SKINNY = {"mlflow": "mlflow-skinny"}  # MLflow writes mlflow==X even when logged with mlflow-skinny


def installed(name: str) -> tuple[str, str] | None:
    """(the distribution that provides ``name``, its version), None when nothing does. The image's
    distributions: not the copies Ray vendors for itself (ray/thirdparty_files, first on sys.path
    once ray is imported)."""
    path = [p for p in sys.path if "thirdparty_files" not in p]
    for dist in filter(None, (name, SKINNY.get(name.lower()))):
        found = next(iter(importlib.metadata.distributions(name=dist, path=path)), None)
        if found is not None:
            return dist, found.version
    return None


def differences(local: str | Path) -> list[str]:
    """Where this image differs from what the model in ``local`` says it needs, by name."""
    found, local = [], Path(local)
    env = local / "python_env.yaml"
    logged = str((yaml.safe_load(env.read_text()) or {}).get("python", "")) if env.exists() else ""
    if logged and logged != platform.python_version():
        found.append(f"python: logged with {logged}, serving with {platform.python_version()}")
    reqs = local / "requirements.txt"
    for line in reqs.read_text().splitlines() if reqs.exists() else []:
        line = line.split(" #")[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            found.append(f"requirements.txt: {line!r} is not a requirement")
            continue
        if req.marker and not req.marker.evaluate():
            continue
        pinned = next((s.version for s in req.specifier if s.operator == "=="), str(req.specifier) or "any version")
        have = installed(req.name)
        if have is None:
            found.append(f"{req.name}: logged with {pinned}, serving with nothing (not installed)")
        elif req.specifier and not req.specifier.contains(have[1], prereleases=True):
            found.append(f"{req.name}: logged with {pinned}, serving with {have[1]}")
    return found


def load(uri: str):
    """(the model, its local folder): downloaded from the tracking server, loaded with every warning an error."""
    import mlflow.artifacts
    import mlflow.pyfunc

    local = mlflow.artifacts.download_artifacts(uri)
    return local, lambda: _strict(mlflow.pyfunc.load_model, local)


def _strict(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args)


def serving_input(local: str | Path) -> dict | None:
    """The request MLflow's scoring server would take for the model's input example (None without one)."""
    path = Path(local) / "serving_input_example.json"
    return json.loads(path.read_text()) if path.exists() else None


def predict(model, request: dict) -> dict:
    """What MLflow's scoring server answers ``request`` with: {"predictions", "warnings"}."""
    from mlflow.pyfunc import scoring_server

    body = dict(request)
    params = body.pop("params", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = scoring_server.infer_and_parse_data(body, model.metadata.get_input_schema())
        answer = io.StringIO()
        scoring_server.predictions_to_json(model.predict(data, params=params), answer)
    return {**json.loads(answer.getvalue()),
            "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught})}


def check(uri: str) -> dict:
    """One model: {"uri", "differences", "stage", "loaded", "example", "error", "served", "seconds"}."""
    started = time.monotonic()
    out = {"uri": uri, "differences": [], "stage": "download", "loaded": False, "example": False, "error": "",
           "served": None, "seconds": 0.0}
    try:
        local, loader = load(uri)
        out.update(differences=differences(local), stage="load")
        model = loader()
        request = serving_input(local)
        out.update(loaded=True, stage="predict", example=request is not None)
        if request is not None:
            out["served"] = predict(model, request)
    except Exception as e:  # the model's failure, named; the others are still checked
        out["error"] = f"{type(e).__name__}: {e}"[:500]
    return {**out, "seconds": round(time.monotonic() - started, 3)}


def versions(client, models: list[str]) -> list[dict]:
    """Every version the arguments name: {"name", "version", "aliases", "uri"}."""
    found = []
    for rm in client.search_registered_models() if not models else []:
        models.append(rm.name)
    for spec in models:
        name, alias = spec.split("@", 1) if "@" in spec else (spec, "")
        name, number = name.split("/", 1) if "/" in name else (name, "")
        if alias:
            picked = [client.get_model_version_by_alias(name, alias)]
        elif number:
            picked = [client.get_model_version(name, number)]
        else:
            picked = client.search_model_versions(f"name='{name}'")
        for mv in sorted(picked, key=lambda v: int(v.version)):
            mv = client.get_model_version(mv.name, mv.version)  # a search's versions come without their aliases
            found.append({"name": mv.name, "version": str(mv.version), "aliases": sorted(mv.aliases or []),
                          "asked": spec, "uri": f"models:/{mv.name}/{mv.version}"})
    return found


def say(line: str) -> None:
    print(f"mlflowcheck: {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="mlflowcheck", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="where the outcomes go, one JSON object per line")
    p.add_argument("models", nargs="*", help="NAME, NAME@ALIAS or NAME/VERSION (none: every registered version)")
    args = p.parse_args(argv)
    from mlflow import MlflowClient

    try:
        found = versions(MlflowClient(), list(args.models))
    except Exception as e:  # an unknown model or alias, a server that stopped answering
        say("fatal: " + " ".join(str(getattr(e, "message", e)).split())[:400])
        return 3
    say(f"{len(found)} model versions")
    with open(args.out, "w") as out:
        for i, mv in enumerate(found, 1):
            result = {**mv, **check(mv["uri"])}
            out.write(json.dumps(result) + "\n")
            out.flush()
            say(f"checked {i}/{len(found)}: {mv['name']} version {mv['version']}"
                f"{' (' + result['error'][:80] + ')' if result['error'] else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

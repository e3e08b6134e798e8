"""What an MLflow scenario notebook logged, found and predicted in the notebook image. Put beside the
scenarios by imagekit at run time (not part of any image) and run after the notebook:

    python imagekit_mlflow.py RUN    (MLFLOW_TRACKING_URI and its credentials from the environment)

Every logged model tagged imagekit_run=RUN, in any experiment of the tracking server: imagekit runs each
notebook with MLFLOW_RUN_CONTEXT={"imagekit_run": RUN}, so MLflow tags every run and logged model the
notebook creates, and nothing anyone else logs (never a time window). For each: its name and URI
(models:/<model id>), the registered versions pointing at it with their aliases, its serving input
example (serving_input_example.json, what MLflow writes for an input_example) and what MLflow's scoring
server answers it with here, the model loaded with mlflow.pyfunc.load_model. One JSON list on the last
line of stdout.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
from mlflow.pyfunc import scoring_server


def logged_by(client, run: str) -> list:
    """The logged models of the notebook run ``run`` (their tag), oldest first."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    found, token = [], None
    while experiments:
        page = client.search_logged_models(experiment_ids=experiments, page_token=token,
                                           filter_string=f"tags.imagekit_run = '{run}'")
        found += list(page)
        token = page.token
        if not token:
            break
    return sorted(found, key=lambda m: m.creation_timestamp)


def answer(model, request: dict):
    """The predictions MLflow's scoring server gives for ``request``, as JSON data."""
    body = dict(request)
    params = body.pop("params", None)
    data = scoring_server.infer_and_parse_data(body, model.metadata.get_input_schema())
    out = io.StringIO()
    scoring_server.predictions_to_json(model.predict(data, params=params), out)
    return json.loads(out.getvalue())["predictions"]


def describe(client, logged) -> dict:
    versions = [client.get_model_version(v.name, v.version)  # a search's versions come without their aliases
                for v in client.search_model_versions(f"run_id='{logged.source_run_id}'")] if logged.source_run_id else []
    registered = [{"name": v.name, "version": str(v.version), "aliases": sorted(v.aliases or [])} for v in versions
                  if getattr(v, "model_id", None) == logged.model_id or logged.model_id in (v.source or "")]
    found = {"name": logged.name, "uri": f"models:/{logged.model_id}", "run_id": logged.source_run_id,
             "registered": registered, "request": None, "predictions": None, "error": ""}
    try:
        local = mlflow.artifacts.download_artifacts(found["uri"])
        example = Path(local) / "serving_input_example.json"
        found["request"] = json.loads(example.read_text()) if example.exists() else None
        model = mlflow.pyfunc.load_model(local)
        if found["request"] is not None:
            found["predictions"] = answer(model, found["request"])
    except Exception as e:  # named for the scenario; the notebook image is where it was logged
        found["error"] = f"{type(e).__name__}: {e}"[:500]
    return found


def main(run: str) -> None:
    client = mlflow.MlflowClient()
    print(json.dumps([describe(client, m) for m in logged_by(client, run)]))


if __name__ == "__main__":
    main(sys.argv[1])

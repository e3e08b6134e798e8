"""Ray Serve application serving pickled models from S3.

Models come from ``IMAGEKIT_MODELS``: a JSON object {name: {"bucket", "key", "sha256",
"environment"}} for a pickle published by imagekit_publish, or {name: {"mlflow": "models:/..."}} for
an MLflow model (read through MLFLOW_TRACKING_URI, its requirements compared and loaded by
mlflowcheck; it answers MLflow's scoring protocol: {"dataframe_split": ...} -> {"predictions"}).
A pickle is downloaded with boto3 (``AWS_ENDPOINT_URL`` and keys from the
environment), its sha256 is checked and its training environment (meta.json's "environment": the
Python and the distributions the pickle references) compared with this one before unpickling;
unpickling runs with every warning turned into an error (scikit-learn's
InconsistentVersionWarning included), so a drifted image fails loudly. Warnings raised while
predicting are returned with the prediction. ``IMAGEKIT_MODELS_FILE`` (optional) names a file of more
models in the same form, read again at each /status: what it adds is loaded then (verify-compat starts
the server with the first model published and adds the others as their notebooks publish them).

    GET  /status                     {"status": "ok", "models": {name: "loaded" | error},
                                      "fingerprints": {name: ["<dist>: trained with A, serving with B", ...]}}
    POST /models/<name>/predict      {"instances": [...]} -> {"labels", "probabilities", "warnings"}
                                     (an MLflow model: MLflow's request -> {"predictions", "warnings"})
"""
from __future__ import annotations

import json
import os

import mlflowcheck
from modelcheck import differences, load_model, predict
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse


@serve.deployment
class ModelServer:
    def __init__(self) -> None:
        self.models, self.status, self.fingerprints, self.mlflow = {}, {}, {}, set()
        self.load(json.loads(os.environ.get("IMAGEKIT_MODELS") or "{}"))
        self.more()

    def more(self) -> None:
        """The models IMAGEKIT_MODELS_FILE names that are not loaded yet, loaded (none while it is being written)."""
        try:
            with open(os.environ["IMAGEKIT_MODELS_FILE"]) as f:
                self.load(json.load(f))
        except (KeyError, OSError, ValueError):
            pass

    def load(self, specs: dict) -> None:
        for name, spec in specs.items():
            if name in self.status:
                continue
            self.fingerprints[name] = differences(spec.get("environment") or {})  # before unpickling
            try:
                if "mlflow" in spec:
                    local, loader = mlflowcheck.load(spec["mlflow"])
                    self.fingerprints[name] = mlflowcheck.differences(local)  # before loading
                    self.mlflow.add(name)
                    self.models[name] = loader()
                else:
                    self.models[name] = load_model(spec)
                self.status[name] = "loaded"
            except Exception as e:  # reported per model; the others still serve
                self.status[name] = f"{type(e).__name__}: {e}"

    async def __call__(self, request: Request):
        parts = request.url.path.strip("/").split("/")
        if parts in (["status"], [""]):
            self.more()
            return {"status": "ok", "models": self.status, "fingerprints": self.fingerprints}
        if len(parts) == 3 and parts[0] == "models" and parts[2] == "predict" and request.method == "POST":
            name = parts[1]
            if name not in self.models:
                return JSONResponse({"error": self.status.get(name, f"no model {name}")}, status_code=404)
            try:
                if name in self.mlflow:
                    return mlflowcheck.predict(self.models[name], await request.json())
                return predict(self.models[name], (await request.json())["instances"])
            except Exception as e:
                return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=500)
        return JSONResponse({"error": f"no route {request.url.path}"}, status_code=404)


app = ModelServer.bind()

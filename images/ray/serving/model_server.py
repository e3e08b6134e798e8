"""Ray Serve application serving pickled models from S3.

Models come from ``IMAGEKIT_MODELS``: a JSON object {name: {"bucket", "key", "sha256",
"environment"}}. Each model is downloaded with boto3 (``AWS_ENDPOINT_URL`` and keys from the
environment), its sha256 is checked and its training environment (meta.json's "environment": the
Python and the distributions the pickle references) compared with this one before unpickling;
unpickling runs with every warning turned into an error (scikit-learn's
InconsistentVersionWarning included), so a drifted image fails loudly. Warnings raised while
predicting are returned with the prediction.

    GET  /status                     {"status": "ok", "models": {name: "loaded" | error},
                                      "fingerprints": {name: ["<dist>: trained with A, serving with B", ...]}}
    POST /models/<name>/predict      {"instances": [...]} -> {"labels", "probabilities", "warnings"}
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pickle
import platform
import warnings

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse


def differences(environment: dict) -> list[str]:
    """Where this environment differs from the one the model was trained in, by name."""
    found = []
    if environment.get("python") and environment["python"] != platform.python_version():
        found.append(f"python: trained with {environment['python']}, serving with {platform.python_version()}")
    for dist, trained in sorted((environment.get("distributions") or {}).items()):
        try:
            serving = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            serving = "nothing (not installed)"
        if serving != trained:
            found.append(f"{dist}: trained with {trained or 'an unknown version'}, serving with {serving}")
    return found


def load_model(spec: dict):
    import boto3

    body = boto3.client("s3").get_object(Bucket=spec["bucket"], Key=spec["key"])["Body"].read()
    digest = hashlib.sha256(body).hexdigest()
    if digest != spec["sha256"]:
        raise ValueError(f"sha256 mismatch: expected {spec['sha256']}, got {digest}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return pickle.loads(body)


def predict(model, instances: list):
    import numpy as np
    import pandas as pd

    X = pd.DataFrame(instances) if instances and isinstance(instances[0], dict) else np.asarray(instances)
    with warnings.catch_warnings(record=True) as caught:  # reported, not fatal: only unpickling must be clean
        warnings.simplefilter("always")
        labels = model.predict(X)
        proba = model.predict_proba(X) if hasattr(model, "predict_proba") else None
    return {"labels": np.asarray(labels).tolist(),
            "probabilities": None if proba is None else np.asarray(proba, dtype=float).tolist(),
            "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught})}


@serve.deployment
class ModelServer:
    def __init__(self) -> None:
        self.models, self.status, self.fingerprints = {}, {}, {}
        for name, spec in json.loads(os.environ.get("IMAGEKIT_MODELS") or "{}").items():
            self.fingerprints[name] = differences(spec.get("environment") or {})  # before unpickling
            try:
                self.models[name] = load_model(spec)
                self.status[name] = "loaded"
            except Exception as e:  # reported per model; the others still serve
                self.status[name] = f"{type(e).__name__}: {e}"

    async def __call__(self, request: Request):
        parts = request.url.path.strip("/").split("/")
        if parts in (["status"], [""]):
            return {"status": "ok", "models": self.status, "fingerprints": self.fingerprints}
        if len(parts) == 3 and parts[0] == "models" and parts[2] == "predict" and request.method == "POST":
            name = parts[1]
            if name not in self.models:
                return JSONResponse({"error": self.status.get(name, f"no model {name}")}, status_code=404)
            try:
                return predict(self.models[name], (await request.json())["instances"])
            except Exception as e:
                return JSONResponse({"error": f"{type(e).__name__}: {e}"}, status_code=500)
        return JSONResponse({"error": f"no route {request.url.path}"}, status_code=404)


app = ModelServer.bind()

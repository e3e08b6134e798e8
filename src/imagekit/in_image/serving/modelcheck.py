"""How a stored model is checked in this image, shared by the model server and stored_check:
its training environment compared with this one (before unpickling), the download with its sha256
checked, unpickling with every warning an error (scikit-learn's InconsistentVersionWarning
included), and a prediction with the warnings it raised. Runs inside the Ray image only.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import pickle
import platform
import warnings


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


def load_model(spec: dict, client=None):
    """The model ``spec`` names ({"bucket", "key", "sha256"}), read with ``client`` (default: boto3's
    from the environment)."""
    return unpickle(download(spec, client))


def download(spec: dict, client=None) -> bytes:
    """The pickle's bytes, their sha256 checked (ValueError: not the bytes that were published)."""
    if client is None:
        import boto3
        client = boto3.client("s3")
    body = client.get_object(Bucket=spec["bucket"], Key=spec["key"])["Body"].read()
    digest = hashlib.sha256(body).hexdigest()
    if digest != spec["sha256"]:
        raise ValueError(f"sha256 mismatch: expected {spec['sha256']}, got {digest}")
    return body


def unpickle(body: bytes):
    """Unpickled with every warning an error (warnings' filters are per process: one thread at a time)."""
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

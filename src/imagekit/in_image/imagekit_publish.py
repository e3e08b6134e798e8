"""The publishing helper of verify-compat's scenario notebooks, put next to them by imagekit at run
time (not part of any image): ``from imagekit_publish import publish``; ``publish(model, probe)``.

Publishes as the platform's flows do: boto3 to S3 (MinIO), versioned by timestamp. Endpoint and
keys come from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); the
scenario's name (IMAGEKIT_SCENARIO: the notebook's file stem) and version (IMAGEKIT_RUN) too.
Written to <models bucket>/<scenario>/<version>/: model.pkl, and meta.json with the model's sha256,
the probe inputs and this image's predictions for them (computed on the probe as it comes back from
JSON, exactly as the server will see it): ``labels`` (predict: classes, or numbers for a regressor)
and ``probabilities`` (predict_proba, or null for a model without it).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import pickle
import pickletools
import platform
import sys
import time

import boto3
import numpy as np
import pandas as pd

RAW = os.environ.get("IMAGEKIT_RAW_BUCKET", "cybersec-ml-raw")
SILVER = os.environ.get("IMAGEKIT_SILVER_BUCKET", "cybersec-ml-silver")
MODELS = os.environ.get("IMAGEKIT_MODELS_BUCKET", "cybersec-ml-models")


def version() -> str:
    return os.environ.get("IMAGEKIT_RUN") or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def s3():
    return boto3.client("s3")


def put_frame(bucket: str, key: str, frame: pd.DataFrame) -> None:
    s3().put_object(Bucket=bucket, Key=key, Body=frame.to_csv(index=False).encode())


def get_frame(bucket: str, key: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(s3().get_object(Bucket=bucket, Key=key)["Body"].read()))


def as_model_input(instances: list):
    """What a server builds from JSON instances: a DataFrame for records, else an array."""
    return pd.DataFrame(instances) if instances and isinstance(instances[0], dict) else np.asarray(instances)


STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
GETS = {"GET", "BINGET", "LONG_BINGET"}


def referenced_modules(body: bytes) -> set[str]:
    """The modules a pickle imports when loaded, from its own opcodes: GLOBAL/INST name them,
    STACK_GLOBAL takes them from the two strings pushed (or fetched from the memo) before it."""
    modules, stack, memo, last = set(), [], {}, None
    for op, arg, _ in pickletools.genops(body):
        top = stack[-1] if last in STRINGS or last in GETS else None
        if op.name in ("GLOBAL", "INST"):
            modules.add(str(arg).split(" ", 1)[0])
        elif op.name in STRINGS:
            stack.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = top
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = top
        elif op.name in GETS:
            stack.append(memo.get(int(arg)))
        elif op.name == "STACK_GLOBAL" and len(stack) >= 2 and isinstance(stack[-2], str):
            modules.add(stack[-2])
        last = op.name
    return modules


def fingerprint(body: bytes) -> dict:
    """Where the model was trained: this image and lock (given by imagekit), this Python, and the
    distributions the pickle itself references, at the versions installed here."""
    owners = importlib.metadata.packages_distributions()
    distributions = {}
    for module in sorted(referenced_modules(body)):
        top = module.split(".", 1)[0]
        if top in sys.stdlib_module_names or top in ("__main__", "builtins", "copy_reg"):
            continue
        for dist in owners.get(top, [f"(module {top}: no distribution)"]):
            try:
                distributions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                distributions[dist] = ""
    return {"image": os.environ.get("IMAGEKIT_IMAGE", ""), "lock": os.environ.get("IMAGEKIT_LOCK", ""),
            "python": platform.python_version(), "distributions": distributions}


def publish(model, probe, dumps=pickle.dumps) -> dict:
    scenario = os.environ.get("IMAGEKIT_SCENARIO", "scenario")
    body = dumps(model)
    records = probe.to_dict(orient="records") if isinstance(probe, pd.DataFrame) else np.asarray(probe).tolist()
    instances = json.loads(json.dumps(records, default=str))  # dates travel as ISO text
    X = as_model_input(instances)
    prefix = f"{scenario}/{version()}"
    meta = {"scenario": scenario, "version": version(), "bucket": MODELS, "key": f"{prefix}/model.pkl",
            "sha256": hashlib.sha256(body).hexdigest(), "environment": fingerprint(body), "instances": instances,
            "labels": np.asarray(model.predict(X)).tolist(),
            "probabilities": (np.asarray(model.predict_proba(X), dtype=float).tolist()
                              if hasattr(model, "predict_proba") else None)}
    s3().put_object(Bucket=MODELS, Key=meta["key"], Body=body)
    s3().put_object(Bucket=MODELS, Key=f"{prefix}/meta.json", Body=json.dumps(meta).encode())
    print(f"published {scenario} {meta['version']}: {len(body)} bytes, sha256 {meta['sha256'][:12]}")
    return meta

"""Publish a trained model as the platform's flows do: boto3 to S3 (MinIO), versioned by timestamp.

Endpoint and keys come from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY). Written to cybersec-ml-models/<scenario>/<version>/:
model.pkl, and meta.json with the model's sha256, the probe inputs and this image's predictions
for them (computed on the probe as it comes back from JSON, exactly as the server will see it).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import time

import boto3
import numpy as np
import pandas as pd

RAW, SILVER, MODELS = "cybersec-ml-raw", "cybersec-ml-silver", "cybersec-ml-models"


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


def publish(scenario: str, model, probe, dumps=pickle.dumps) -> dict:
    body = dumps(model)
    records = probe.to_dict(orient="records") if isinstance(probe, pd.DataFrame) else np.asarray(probe).tolist()
    instances = json.loads(json.dumps(records))
    X = as_model_input(instances)
    prefix = f"{scenario}/{version()}"
    meta = {"scenario": scenario, "version": version(), "bucket": MODELS, "key": f"{prefix}/model.pkl",
            "sha256": hashlib.sha256(body).hexdigest(), "instances": instances,
            "labels": np.asarray(model.predict(X)).tolist(),
            "probabilities": np.asarray(model.predict_proba(X), dtype=float).tolist()}
    s3().put_object(Bucket=MODELS, Key=meta["key"], Body=body)
    s3().put_object(Bucket=MODELS, Key=f"{prefix}/meta.json", Body=json.dumps(meta).encode())
    print(f"published {scenario} {meta['version']}: {len(body)} bytes, sha256 {meta['sha256'][:12]}")
    return meta

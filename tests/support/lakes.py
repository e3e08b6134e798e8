"""Synthetic data lakes for verify-stored: copies of published models, moved between S3 servers."""
from __future__ import annotations

import hashlib
import json


def copy_lake(client, bucket: str, count: int, *, prefix: str = "lake", of: str = "") -> list[str]:
    """A synthetic data lake: ``count`` copies of the models under ``of`` in ``bucket`` (round robin), each
    under ``<prefix>/<scenario>-<n>/<version>/`` with its own sha256 (bytes appended after the pickle's
    end, which unpickling ignores): the meta.json keys written."""
    from concurrent.futures import ThreadPoolExecutor

    metas = [k["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=of)
             for k in page.get("Contents", []) if k["Key"].endswith("/meta.json") and not k["Key"].startswith(prefix)]
    sources = [(json.loads(client.get_object(Bucket=bucket, Key=k)["Body"].read())) for k in metas]
    bodies = [client.get_object(Bucket=s["bucket"], Key=s["key"])["Body"].read() for s in sources]

    def one(n: int) -> str:
        meta, body = sources[n % len(sources)], bodies[n % len(sources)] + f"\n#copy {prefix} {n}".encode()
        folder = f"{prefix}/{meta['scenario']}-{n}/{meta['version']}"
        client.put_object(Bucket=bucket, Key=f"{folder}/model.pkl", Body=body)
        copy = {**meta, "key": f"{folder}/model.pkl", "sha256": hashlib.sha256(body).hexdigest()}
        client.put_object(Bucket=bucket, Key=f"{folder}/meta.json", Body=json.dumps(copy).encode())
        return f"{folder}/meta.json"

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, range(count)))


def transplant(source, target, bucket: str, prefix: str) -> None:
    """Copy every object under ``prefix`` of ``bucket`` from one S3 server to another (created there)."""
    if bucket not in {b["Name"] for b in target.list_buckets().get("Buckets", [])}:
        target.create_bucket(Bucket=bucket)
    for page in source.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            target.put_object(Bucket=bucket, Key=o["Key"], Body=source.get_object(Bucket=bucket, Key=o["Key"])[
                "Body"].read())

"""One model of a data lake, as stored_check checks it (in the candidate Ray image): read from S3 ahead of its
turn (its kept outcome, else its meta.json, the ETag of the model it names and the model's bytes), checked
(unpickled with every warning an error, asked its probe rows), and its outcome to keep in the eval bucket.
"""
from __future__ import annotations

import collections
import json
import socket
import time

from botocore.exceptions import BotoCoreError, ClientError
from modelcheck import differences, download, predict, unpickle

AHEAD = 4  # models read ahead of the one being checked: S3's latency, not its bandwidth, bounds a check


def read(s3, key: str, buckets: dict, image: str, recheck: bool, seen: dict) -> dict:
    """One model's requests, made ahead in a thread while earlier models are checked: its kept outcome while it
    still holds ("before"), else its meta.json ("etag", "meta" or the "error" in it), the ETag of the model it
    names and the model's bytes ("body", or why not: "unread"). ``seen``: the "etags" of the models bucket's
    objects and the "kept" outcome keys, listed at the start. An S3 that stops answering raises."""
    started, kept = time.monotonic(), f"{kept_prefix(image)}{key}.outcome"  # never a key ending in meta.json
    if not recheck and kept in seen["kept"] and (before := _still_holds(s3, buckets, kept, key, seen)):
        return {"before": before}
    got = s3.get_object(Bucket=buckets["models"], Key=key)
    found = {"started": started, "kept": kept, "etag": got["ETag"]}
    try:
        meta = json.loads(got["Body"].read())
    except ValueError as e:
        return {**found, "error": f"meta.json is not JSON: {e}"}
    lacks = [f for f in ("bucket", "key", "sha256", "instances", "labels") if f not in meta] \
        if isinstance(meta, dict) else ["everything (it is not an object)"]
    if lacks:
        return {**found, "error": f"meta.json lacks {', '.join(lacks)}"}
    found.update(meta=meta, model_etag=_etag(s3, meta["bucket"], meta["key"], buckets, seen))
    if found["model_etag"] is None:
        return {**found, "error": f"meta.json names s3://{meta['bucket']}/{meta['key']}, which does not exist"}
    try:
        return {**found, "body": download(meta, s3)}
    except BotoCoreError:
        raise
    except Exception as e:  # not the bytes that were published: the model's failure, at its load
        return {**found, "unread": f"{type(e).__name__}: {e}"[:500]}


def check(key: str, found: dict) -> tuple[dict, dict | None]:
    """One model checked from what ``read`` found, one at a time (unpickling sets the process's warning
    filters): {"meta", "node", "reused", "sha256", "fingerprint", "stage", "loaded", "error", "expected",
    "served", "seconds"}, what fails in the model its "error" at "stage" (meta, load or predict); and the
    outcome to keep (its key and body), None when there is none."""
    out = {"meta": key, "node": socket.gethostname(), "reused": False, "sha256": "", "fingerprint": [],
           "stage": "meta", "loaded": False, "error": "", "expected": None, "served": None, "seconds": 0.0}
    if "before" in found:
        return {**out, **found["before"], "reused": True}, None
    meta = found.get("meta")
    if meta:
        out.update(sha256=meta["sha256"], expected={"labels": meta["labels"], "probabilities": meta.get("probabilities")})
    if "error" in found:
        return {**out, "error": found["error"]}, None
    outcome = {"fingerprint": differences(meta.get("environment") or {}), "stage": "load", "loaded": False,
               "error": found.get("unread", ""), "served": None}
    if "body" in found:
        try:
            model = unpickle(found["body"])
            outcome.update(loaded=True, stage="predict")
            outcome["served"] = predict(model, meta["instances"])
        except Exception as e:  # the model's failure, named; the others are still checked
            outcome["error"] = f"{type(e).__name__}: {e}"[:500]
    keep = json.dumps({**outcome, "sha256": out["sha256"], "expected": out["expected"], "meta_etag": found["etag"],
                       "model": [meta["bucket"], meta["key"], found["model_etag"]]}).encode()
    return {**out, **outcome, "seconds": round(time.monotonic() - found["started"], 3)}, {"Key": found["kept"],
                                                                                           "Body": keep}


def _etag(s3, bucket: str, key: str, buckets: dict, seen: dict) -> str | None:
    """The object's ETag, from the listing when it is in the models bucket; None: there is no such object."""
    listed = seen["etags"].get(key) if bucket == buckets["models"] else None
    try:
        return listed or s3.head_object(Bucket=bucket, Key=key)["ETag"]
    except ClientError as e:
        if _missing(e):
            return None
        raise


def _still_holds(s3, buckets: dict, kept: str, key: str, seen: dict) -> dict | None:
    """The kept outcome of meta.json ``key`` while that meta.json and the model it names are the objects it
    was checked with (their ETags), else None: checked again."""
    try:
        before = json.loads(s3.get_object(Bucket=buckets["eval"], Key=kept)["Body"].read())
        bucket, model, etag = before["model"]
    except ClientError as e:
        if _missing(e):
            return None
        raise
    except (ValueError, KeyError, TypeError):  # not an outcome this version wrote: checked again
        return None
    if before.get("meta_etag") != seen["etags"].get(key) or _etag(s3, bucket, model, buckets, seen) != etag:
        return None
    return {k: before[k] for k in ("sha256", "expected", "fingerprint", "stage", "loaded", "error", "served")}


def kept_prefix(image: str) -> str:
    return f"verify-stored/{image.removeprefix('sha256:')}/"


def _missing(e: ClientError) -> bool:
    return e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


def ahead(pool, fn, items: list):
    """``fn(item)`` of each item in order, the next ``AHEAD`` asked for before one is given: at most that many
    models' bytes held beside the one being checked."""
    asked = collections.deque()
    for item in items:
        asked.append(pool.submit(fn, item))
        if len(asked) > AHEAD:
            yield asked.popleft().result()
    while asked:
        yield asked.popleft().result()

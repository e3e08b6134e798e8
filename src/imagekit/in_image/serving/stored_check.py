"""verify-stored's check of a data lake, run in the candidate Ray image: by imagekit (in a container
of its own, or as a Ray Client driver of a cluster) or as a KubeRay RayJob's entrypoint.

    python -m stored_check (--list FILE | --prefix PREFIX) --out FILE --image ID [--batch-size N] [--recheck]

The list holds one meta.json key of the models bucket per line (FILE may be s3://BUCKET/KEY);
with --prefix, every meta.json under it in the models bucket (a RayJob's way).
Models are checked by Ray tasks, a batch each, every task in a fresh worker process (memory does not
grow with the lake), spread over the nodes of the Ray that RAY_ADDRESS names (unset: a Ray of this
container's own). A batch whose process dies (a model that calls os._exit or exhausts memory) is
checked again in two halves, and so on down to one model: the model that kills its process is named,
the others are checked (a few processes per such model, not one per model of its batch).
Each outcome is kept in the eval bucket as verify-stored/<image id>/<meta.json key>.outcome, with the
ETags of that meta.json and of the model object it names, and reused by the next run with the same image
(unless --recheck) while both objects are the ones it was checked with. Two listings at the start (the kept
outcomes, the ETags of the models bucket's objects) spare the rest: a model checked before costs one
request (its kept outcome), a new one three (its meta.json, its model, its outcome written), asked by
threads a few models ahead of the one being checked (lakemodel.py).

Environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL (S3 as
the tasks reach it), IMAGEKIT_MODELS_BUCKET, IMAGEKIT_EVAL_BUCKET.

Out: one JSON object per model (see lakemodel.check), written as each batch ends. Progress lines on stdout
start with "stored_check:"; a failure of the run itself (S3 unreachable, a node in another
environment) is the line "stored_check: fatal: <reason>" and exit code 3.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import importlib.metadata
import json
import os
import platform
import socket
import sys
import time

import boto3
import ray
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from lakemodel import AHEAD, ahead, check, kept_prefix, read

DIED = (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError, ray.exceptions.NodeDiedError)


class Fatal(Exception):
    """The run cannot go on: no model's outcome would mean anything."""


def s3_settings() -> dict:
    env = os.environ
    return {"endpoint_url": env.get("AWS_ENDPOINT_URL"), "region_name": env.get("AWS_DEFAULT_REGION", "us-east-1"),
            "aws_access_key_id": env.get("AWS_ACCESS_KEY_ID"), "aws_secret_access_key": env.get("AWS_SECRET_ACCESS_KEY")}


def client(s3: dict):
    return boto3.client("s3", config=Config(retries={"max_attempts": 3, "mode": "standard"}), **s3)


def environment() -> list[str]:
    """This process's Python and every installed distribution: what a node must share with the candidate."""
    dists = {f"{d.metadata['Name'].lower()}=={d.version}" for d in importlib.metadata.distributions()}
    return [f"python=={platform.python_version()}", *sorted(dists)]


def listing(s3, bucket: str, prefix: str) -> dict[str, str]:
    """{key: ETag} of every object under ``prefix``: a thousand objects a request."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


@ray.remote(num_cpus=1, max_retries=0, max_calls=1)  # a fresh process per batch: its memory goes with it
def check_batch(keys: list[str], s3: dict, buckets: dict, image: str, recheck: bool, seen: dict) -> list[dict]:
    """The batch's models in order, each read ``AHEAD`` models ahead (S3's answers are waited for side by side)
    and checked here; their outcomes kept, written meanwhile."""
    c, pool, results, writes = client(s3), concurrent.futures.ThreadPoolExecutor(AHEAD), [], []
    try:
        for key, found in zip(keys, ahead(pool, lambda k: read(c, k, buckets, image, recheck, seen), keys)):
            result, keep = check(key, found)
            results.append(result)
            if keep:
                writes.append(pool.submit(c.put_object, Bucket=buckets["eval"], **keep))
        for w in writes:
            w.result()
        return results
    except (BotoCoreError, ClientError) as e:
        raise Fatal(f"S3 at {s3['endpoint_url']} stopped answering: {type(e).__name__}: {e}") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


@ray.remote(num_cpus=0, max_retries=0)
def node_facts(s3: dict, bucket: str) -> tuple[str, list[str], str]:
    """A node's name, environment, and whether it reaches S3 ("" or why not)."""
    try:
        client(s3).head_bucket(Bucket=bucket)
        reach = ""
    except (BotoCoreError, ClientError) as e:
        reach = f"{type(e).__name__}: {e}"
    return socket.gethostname(), environment(), reach


def preflight(s3: dict, bucket: str) -> int:
    """Every alive node runs the candidate's environment and reaches S3; the number of nodes."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    mine = set(environment())
    for name, theirs, reach in ray.get([node_facts.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n, soft=False)).remote(s3, bucket) for n in nodes]):
        if set(theirs) != mine:
            differ = sorted(set(theirs) ^ mine)
            raise Fatal(f"node {name} runs another environment than the candidate Ray image ({len(differ)} "
                        f"differences, e.g. {', '.join(differ[:4])}): start the cluster from the candidate image")
        if reach:
            raise Fatal(f"node {name} cannot reach S3 at {s3['endpoint_url']}: {reach}")
    return len(nodes)


def run(keys: list[str], out, *, image: str, batch_size: int, recheck: bool) -> None:
    s3 = s3_settings()
    buckets = {"models": os.environ.get("IMAGEKIT_MODELS_BUCKET", "cybersec-ml-models"),
               "eval": os.environ.get("IMAGEKIT_EVAL_BUCKET", "cybersec-ml-eval")}
    nodes = preflight(s3, buckets["models"])
    try:
        c = client(s3)
        seen = ray.put({"etags": listing(c, buckets["models"], os.path.commonprefix(keys).rpartition("/")[0]),
                        "kept": set() if recheck else set(listing(c, buckets["eval"], kept_prefix(image)))})
    except (BotoCoreError, ClientError) as e:
        raise Fatal(f"S3 at {s3['endpoint_url']} cannot be listed: {type(e).__name__}: {e}") from None
    say(f"{len(keys)} models in batches of {batch_size} on {nodes} node(s)")
    pending = {check_batch.remote(keys[i:i + batch_size], s3, buckets, image, recheck, seen): keys[i:i + batch_size]
               for i in range(0, len(keys), batch_size)}
    done = failed = 0
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        batch = pending.pop(ref)
        try:
            results = ray.get(ref)
        except DIED as e:
            if len(batch) > 1:
                say(f"a batch's process died ({type(e).__name__}): checking its {len(batch)} models again in two "
                    f"halves")
                halves = (batch[:len(batch) // 2], batch[len(batch) // 2:])
                pending.update({check_batch.remote(h, s3, buckets, image, recheck, seen): h for h in halves})
                continue
            results = [{"meta": batch[0], "node": "", "reused": False, "sha256": "", "fingerprint": [],
                        "stage": "process", "loaded": False, "served": None, "expected": None, "seconds": 0.0,
                        "error": f"the process checking it died ({type(e).__name__}): a model that exits its "
                                 f"process or exhausts its memory"}]
        except ray.exceptions.RayTaskError as e:
            cause = e.cause  # Fatal comes back as the worker made it: known by name
            raise Fatal(str(cause) if type(cause).__name__ == "Fatal" else f"{type(cause).__name__}: {cause}") from None
        for r in results:
            out.write(json.dumps(r) + "\n")
        out.flush()
        done += len(results)
        failed += sum(bool(r["error"]) for r in results)
        say(f"checked {done}/{len(keys)} models ({failed} failing to load or predict) on "
            f"{', '.join(sorted({r['node'] for r in results if r['node']})) or 'no node'}")


def say(line: str) -> None:
    print(f"stored_check: {line}", flush=True)


def _keys(args) -> list[str]:
    if args.list is None:
        listed = listing(client(s3_settings()), os.environ.get("IMAGEKIT_MODELS_BUCKET", "cybersec-ml-models"),
                         args.prefix)
        return sorted(k for k in listed if k.endswith("/meta.json"))
    if args.list.startswith("s3://"):
        bucket, _, key = args.list[5:].partition("/")
        text = client(s3_settings()).get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    else:
        with open(args.list) as f:
            text = f.read()
    return [line.strip() for line in text.splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="stored_check", description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--list", help="meta.json keys, one per line (a file or s3://BUCKET/KEY)")
    which.add_argument("--prefix", help="every meta.json under this prefix of the models bucket ('' for all)")
    p.add_argument("--out", required=True, help="where the outcomes go, one JSON object per line")
    p.add_argument("--image", required=True, help="the candidate Ray image's id (its config digest): the key of "
                                                  "the kept outcomes")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--recheck", action="store_true", help="check every model again, kept outcomes ignored")
    args = p.parse_args(argv)
    try:
        keys = _keys(args)
        if os.environ.get("RAY_ADDRESS"):  # ray://HOST:10001 (a cluster), or a RayJob's own head
            connect()
        else:
            ray.init(num_cpus=os.cpu_count(), object_store_memory=256 * 2**20, include_dashboard=False,
                     log_to_driver=False)
        with open(args.out, "w") as out:
            run(keys, out, image=args.image, batch_size=args.batch_size, recheck=args.recheck)
    except Fatal as e:
        say("fatal: " + " ".join(str(e).split()))
        return 3
    except ConnectionError as e:  # Ray Client could not reach the cluster
        say(f"fatal: cannot connect to the Ray cluster at {os.environ.get('RAY_ADDRESS')}: " + " ".join(str(e).split()))
        return 3
    return 0


def connect(attempts: int = 3) -> None:
    """Ray Client's proxier on a busy head sometimes fails to start a client's server ("Initialization
    failure from server"): asked again, a few seconds later."""
    for attempt in range(attempts):
        try:
            ray.init(log_to_driver=False)
            return
        except ConnectionError:
            if attempt == attempts - 1:
                raise
            time.sleep(5)


if __name__ == "__main__":
    sys.exit(main())

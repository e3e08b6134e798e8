"""verify-stored on synthetic data lakes (copies of the example models, each with its own sha256):
time and peak memory of every container, on a Ray of its own and on a three-node cluster, against
today's alternative, one Serve replica holding every model (IMAGEKIT_MODELS), at 100 models.

    .venv/bin/python bench/stored_bench.py [SIZE ...]      (default: 100 1000 10000)

The lake is in the S3 stand-in (images/s3, moto in a container of its own), published on this
machine's loopback as a `kubectl port-forward` is (so the local check goes through imagekit's relay)
and on the engine's gateway, where the cluster's nodes reach it as host.docker.internal.
"""
from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support: synthetic lakes, a Ray cluster

import support  # noqa: E402

from imagekit import build, config, containers, forward, services  # noqa: E402
from imagekit.engine import Engine  # noqa: E402
from imagekit.verify import roundtrip, s3store  # noqa: E402
from imagekit.verify.compat import verify_compat  # noqa: E402
from imagekit.verify.policy import notebooks  # noqa: E402
from imagekit.verify.stored import verify_stored  # noqa: E402
KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret"}
MODELS = "cybersec-ml-models"
UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


@contextlib.contextmanager
def peak_memory():
    """Sample `docker stats` until the block ends: {container name: peak bytes}."""
    peaks, done = {}, threading.Event()

    def sample():
        while not done.is_set():
            out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}"],
                                 capture_output=True, text=True).stdout
            for name, used in re.findall(r"^(\S+) ([\d.]+\w+) /", out, re.M):
                value, unit = re.match(r"([\d.]+)(\w+)", used).groups()
                peaks[name] = max(peaks.get(name, 0), float(value) * UNITS.get(unit, 1))
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        done.set()
        thread.join()


def gib(peaks: dict, cluster: bool) -> str:
    """Peak memory of the check's container and, on the cluster, of each node."""
    def label(name: str) -> str | None:
        if name.startswith("imagekit-verify-stored-") and "-ray-checker-" in name:
            return "checker"
        node = re.search(r"imagekit-bench-cluster-[0-9a-f]+-(head|worker-\d+)-\d+$", name)
        return node.group(1) if node and cluster else None
    shown = {label(n): v for n, v in peaks.items() if label(n)}
    return ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in sorted(shown.items())) or "not sampled"


def single_replica(engine, ray: str, endpoint: s3store.Endpoint, prefix: str) -> tuple[float, int, float]:
    """Today's alternative: every model of the lake in one Serve replica's environment and memory."""
    with containers.Run(engine, "bench-replica") as run, peak_memory() as peaks:
        started = time.monotonic()
        store = s3store.open_store(run, endpoint, lambda line: None)
        metas = {k: store.json(MODELS, k) for k in store.metas(MODELS, prefix)}
        models = {k.removesuffix("/meta.json").replace("/", "@"): m for k, m in metas.items()}
        server = run.start(services.ModelServer(ray, {**store.keys, "AWS_ENDPOINT_URL": store.inside},
                                                {n: roundtrip.spec(m) for n, m in models.items()}))
        status = server.ready(600)
        ok = sum(roundtrip.serve(server.url(8000), n, m, status["models"][n]).ok for n, m in models.items())
        seconds, name = time.monotonic() - started, server.c.name
    return seconds, ok, peaks.get(name, 0.0)


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000, 10000]
    engine = Engine.connect()
    cfg = config.load(ROOT / "imagekit.toml", env=KEYS)
    s3 = next(i for i in build.load_result(cfg).images if i.name == "s3").image_id
    with containers.Run(engine, "bench-lake") as run:
        server = run.start(services.S3Server(s3, {**KEYS, "AWS_DEFAULT_REGION": "us-east-1"}, minio=False), ready=60)
        url = server.url(9000)  # on this machine's loopback, as a port-forward; relayed for the cluster's nodes
        relayed = run.enter(forward.Forwarder(url, forward.gateway(engine.client)))
        s3_client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                                 aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
                                 aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"])
        cfg = config.load(ROOT / "imagekit.toml", env={**KEYS, "IMAGEKIT_VERIFY_CLUSTER_S3_ENDPOINT": relayed.inside})
        ray = next(i for i in build.load_result(cfg).images if i.name == "ray").image_id
        scenarios = notebooks(cfg.path(cfg.verify.notebooks))
        published = verify_compat(cfg, engine, write_record=False, s3_endpoint=url, scenarios=scenarios)
        print(f"published {len(scenarios)} example models ({published.seconds:.0f} s), ok={published.ok}")
        timings = {}
        with support.ray_cluster(engine, ray, 2, name="bench-cluster") as (address, _):
            for size in sizes:
                t = time.monotonic()
                for n, scenario in enumerate(scenarios):  # copies of every example, in turn
                    share = size // len(scenarios) + (n < size % len(scenarios))
                    support.copy_lake(s3_client, MODELS, share, prefix=f"lake{size}/{scenario}", of=f"{scenario}/")
                batch = max(5, min(100, size // 12))  # a dozen batches at least: every node gets some
                print(f"\n{size} models: lake written in {time.monotonic() - t:.0f} s; batches of {batch}")
                for where, cluster in (("a Ray of its own", ""), ("the 3-node cluster", address)):
                    for recheck in (True, False) if size < 10000 else (True,):  # kept: about 2/3 of the time
                        with peak_memory() as peaks:
                            t = time.monotonic()
                            report = verify_stored(cfg, engine, prefix=f"lake{size}/", s3_endpoint=url,
                                                   ray_address=cluster, recheck=recheck, batch_size=batch)
                            seconds = timings[size, cluster, recheck] = time.monotonic() - t
                        print(f"  {where:<20} {'checked' if recheck else 'kept   '} {seconds:6.1f} s "
                              f"({1000 * seconds / size:5.1f} ms/model), ok={report.ok}, {report.checked} new, "
                              f"{report.reused} kept, nodes {len(report.nodes)}; peak memory {gib(peaks, bool(cluster))}")
                if size == 100:
                    old, ok, peaks = single_replica(engine, ray, s3store.Endpoint(url, *KEYS.values()), "lake100/")
                    print(f"  one Serve replica    all     {old:6.1f} s ({1000 * old / size:5.1f} ms/model), "
                          f"{ok}/{size} same; peak memory {peaks / 2**30:.2f} GiB")
                    print(f"  batches of one Ray of its own vs one replica: {timings[size, '', True] / old:.2f}x "
                          f"the time")


if __name__ == "__main__":
    main()

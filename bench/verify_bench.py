"""Time `imagekit verify-compat` on the built images, scenario by scenario, and `verify-stored`
model by model: the data lake's pickles, and MLflow's registry.

    .venv/bin/python bench/verify_bench.py [RUNS]

The models go to an S3 server on the host (moto, --s3-endpoint), so the stored-models check then
serves what verify-compat published, as it would the data lake's models. The MLflow scenarios log
into a tracking server verify-compat starts; for `verify-stored --mlflow-uri` they are run once more
against one started here (on a loopback port, as a port-forward), whose registry is then checked
in the built Ray image against itself as the baseline.
"""
from __future__ import annotations

import logging
import socket
import statistics
import sys
import time
from pathlib import Path

from moto.server import ThreadedMotoServer

from imagekit import build, config, containers
from imagekit.engine import Engine
from imagekit.verify import s3store, tracking
from imagekit.verify.compat import verify_compat
from imagekit.verify.mlflowstore import verify_mlflow
from imagekit.verify.stored import verify_stored

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=port, verbose=False)
    server.start()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    endpoint = f"http://127.0.0.1:{port}"
    try:
        cfg = config.load(ROOT / "imagekit.toml", env={"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
        engine, totals, per = Engine.connect(), [], {}
        for n in range(runs):
            t = time.monotonic()
            report = verify_compat(cfg, engine, write_record=False, s3_endpoint=endpoint)
            totals.append(time.monotonic() - t)
            for s in report.roundtrip.scenarios:
                per.setdefault(s.name, []).append(s.train_seconds + s.serve_seconds)
            per.setdefault("lifecycle", []).append(report.lifecycle.seconds)
            print(f"run {n + 1}: {totals[-1]:5.1f} s total, ok={report.ok}; Ray Serve up "
                  f"{report.roundtrip.ray_startup_seconds:.1f} s")
        for name, seconds in per.items():
            print(f"  scenario {name:<20} {statistics.median(seconds):5.1f} s (train + serve)")
        print(f"verify-compat, {len(per)} scenarios: median {statistics.median(totals):.1f} s over {runs} runs")
        mlflow, plain = statistics.median(per["cybersec-mlflow"]), statistics.median(per["cybersec"])
        print(f"  the cybersec pipeline logged with MLflow and found through its API: {mlflow:.1f} s, "
              f"{mlflow / plain:.2f}x imagekit_publish's {plain:.1f} s")
        registry(cfg, engine)
        t = time.monotonic()
        stored = verify_stored(cfg, engine, s3_endpoint=endpoint)
        total = time.monotonic() - t
        n = len(stored.models)
        print(f"verify-stored, {n} models: {total:.1f} s, ok={stored.ok} ({stored.checked} checked, {stored.reused} "
              f"kept from an earlier run); {total / n:.1f} s per model in all (bench/stored_bench.py: lakes)")
    finally:
        server.stop()


def registry(cfg, engine) -> None:
    images = {i.name: i.image_id for i in build.load_result(cfg).images}
    ray, quiet = images["ray"], lambda line: None
    with containers.Run(engine, "bench") as run:
        store = s3store.open_store(run, s3store.store_for(cfg, engine, None, quiet), quiet)
        url = tracking.start_server(run, images["mlflow"], store).url(5000)
        for _ in range(3):  # three versions of each registered model
            verify_compat(cfg, engine, scenarios=("cybersec-mlflow",), mlflow_uri=url, write_record=False)
        t = time.monotonic()
        report = verify_mlflow(cfg, engine, ray=ray, baseline=ray, mlflow_uri=url)
        total, n = time.monotonic() - t, len(report.models)
        seconds = [m.candidate.seconds for m in report.models]
        print(f"verify-stored --mlflow-uri, {n} model versions in the candidate and the baseline: {total:.1f} s, "
              f"ok={report.ok}; per version {statistics.median(seconds):.1f} s to download, compare, load and "
              f"predict (median), {total / n:.1f} s in all with both images' containers")


if __name__ == "__main__":
    main()

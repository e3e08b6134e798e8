"""Requests a second moto's S3 server answers, started as `moto_server` starts it against the S3 stand-in's
launcher (images/s3/s3server.py: moto's list of its own services read once, not on every request).

    .venv/bin/python bench/s3_bench.py [REQUESTS]      (default: 400 puts then 400 gets, 2 KB objects)

Each server is a process of its own on this machine (as tests/support starts one), asked by one client
and then by eight threads; the two launchers alternate twice, so a machine that slows down meanwhile
slows both alike; the better of each is printed.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support: moto's server in a process of its own

from support import servers  # noqa: E402

LAUNCHERS = {"moto_server": ("-m", "moto.server"), "s3server.py": (str(servers.S3_SERVER),)}


def rate(launcher: tuple[str, ...], clients: int, requests: int) -> float:
    with servers.moto_server(launcher=launcher) as port:
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench-secret")
        s3.create_bucket(Bucket="bench")
        started = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda n: s3.put_object(Bucket="bench", Key=f"k/{n}", Body=b"x" * 2000), range(requests)))
            list(pool.map(lambda n: s3.get_object(Bucket="bench", Key=f"k/{n}")["Body"].read(), range(requests)))
        return 2 * requests / (time.monotonic() - started)


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    for clients in (1, 8):
        best = dict.fromkeys(LAUNCHERS, 0.0)
        for _ in range(2):
            for name, argv in LAUNCHERS.items():
                best[name] = max(best[name], rate(argv, clients, requests))
        print(f"{clients} client(s): " + ", ".join(f"{n} {v:.0f} requests/s" for n, v in best.items()) +
              f"  ratio {best['s3server.py'] / best['moto_server']:.2f}x", flush=True)


if __name__ == "__main__":
    main()

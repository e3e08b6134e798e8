"""The install step: uv (what imagekit uses) against pip (what the Dockerfiles ran before), same wheels.

    .venv/bin/python bench/install_bench.py [RUNS]

Installs the base image's view of the lock (its hash-checked wheels from the cache) into a
prefix in a network-less container of the OS image, with bytecode compiled in both cases
(pip compiles by default; imagekit runs compileall with checked-hash pycs after uv). Only the
install command is timed, inside the container.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from imagekit import config, containers, lock, osimage, tools, wheels
from imagekit.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
TIMED = 's=$(date +%s%N); {cmd}; e=$(date +%s%N); echo "seconds $(( (e - s) / 1000000 ))"'
PIP = ("python3 -m venv /opt/venv && /opt/venv/bin/pip install -q --no-index --find-links /w --require-hashes "
       "--no-deps --prefix /install -r /w/requirements.txt")
UV = ("python3 -m venv --without-pip /opt/venv && UV_CACHE_DIR=/tmp/uvc /uv pip install -q --python /opt/venv/bin/python "
      "--prefix /install --no-deps --require-hashes --no-index --find-links /w --link-mode copy -r /w/requirements.txt"
      " && PYTHONHASHSEED=0 /opt/venv/bin/python -m compileall -q -j0 -s /install -p /opt/venv "
      "--invalidation-mode checked-hash /install >/dev/null; true")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    cfg, engine = config.load(ROOT / "imagekit.toml"), Engine.connect()
    os_image = osimage.ensure(cfg, engine).ref
    pins = list(lock.load_views(cfg).own["base"])
    fetched = wheels.fetch(cfg, pins)
    with tempfile.TemporaryDirectory(prefix="imagekit-bench-") as tmp:
        staged = wheels.stage(fetched, pins, Path(tmp) / "w")
        times = {}
        for name, cmd in (("pip", PIP), ("uv", UV)):
            times[name] = []
            for _ in range(runs):
                out = containers.run(engine, os_image, ["bash", "-c", TIMED.format(cmd=cmd)], user="root",
                                 inputs={"/w": staged, "/uv": tools.binary()}, timeout=1800)
                times[name].append(int(out.strip().splitlines()[-1].split()[-1]) / 1000)
    mb = fetched.bytes / 1e6
    for name, values in times.items():
        print(f"{name:<3} install of {len(pins)} wheels ({mb:.0f} MB), bytecode compiled: "
              f"median {statistics.median(values):6.1f} s  ({', '.join(f'{v:.1f}' for v in values)})")
    print(f"uv is {statistics.median(times['pip']) / statistics.median(times['uv']):.1f}x faster than pip")


if __name__ == "__main__":
    main()

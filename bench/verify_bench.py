"""Time `imagekit verify-compat` on the built images, phase by phase.

    .venv/bin/python bench/verify_bench.py [RUNS]
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from imagekit import config
from imagekit.engine import Engine
from imagekit.verify import verify_compat


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    cfg, engine = config.load(ROOT / "imagekit.toml"), Engine.connect()
    totals = []
    for n in range(runs):
        t = time.monotonic()
        report = verify_compat(cfg, engine, write_record=False)
        totals.append(time.monotonic() - t)
        train = sum(s.train_seconds for s in report.roundtrip.scenarios)
        print(f"run {n + 1}: {totals[-1]:5.1f} s total, ok={report.ok}; notebooks {train:.1f} s, "
              f"Ray Serve up {report.roundtrip.ray_startup_seconds:.1f} s, S3: {report.roundtrip.s3_server}")
    print(f"verify-compat, 4 scenarios: median {statistics.median(totals):.1f} s over {runs} runs "
          f"(target: well under 180 s, ratio {180 / statistics.median(totals):.1f}x under)")


if __name__ == "__main__":
    main()

"""CPU a Ray head costs until it is ready, by how readiness is asked: `ray health-check` every 2 s (what
RayNode.ready did: it imports all of Ray per ask) against RayNode.ready now (a socket, by the image's Python).

    .venv/bin/python bench/probe_bench.py [ROUNDS]

Each round starts a head as KubeRay starts it, waits for it both ways in turn (a fresh head each), and
reads the head container's CPU from the engine once it is ready.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from imagekit import build, config, containers, services, wait
from imagekit.engine import Engine

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds(node: services.RayNode) -> float:
    return node.c.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9


def health_check(node: services.RayNode) -> None:
    wait.until("ray health-check", lambda: node.exec(["ray", "health-check", "--address", "head:6379"])[0] == 0,
               120, every=2, gone=node.exited)


def head_until_ready(engine: Engine, ray: str, ready) -> tuple[float, float]:
    with containers.Run(engine, "bench") as run:
        started = time.monotonic()
        head = run.start(services.RayNode(ray))
        ready(head)
        return time.monotonic() - started, cpu_seconds(head)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    cfg = config.load(ROOT / "imagekit.toml")
    engine = Engine.connect()
    ray = build.load_result(cfg).image("ray").image_id
    ways = {"ray health-check every 2 s": health_check, "RayNode.ready (a socket)": lambda h: h.ready(120)}
    seen = {name: [head_until_ready(engine, ray, ready) for _ in range(rounds)] for name, ready in ways.items()}
    for name, runs in seen.items():
        print(f"{name:<28} ready in {sum(t for t, _ in runs) / rounds:5.1f} s, "
              f"head CPU until then {sum(c for _, c in runs) / rounds:5.1f} s (mean of {rounds})")
    old, new = (sum(c for _, c in runs) / rounds for runs in seen.values())
    print(f"CPU ratio, health-check / socket: {old / new:.2f}x")


if __name__ == "__main__":
    main()

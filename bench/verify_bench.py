"""Time `imagekit verify-compat` on the built images, phase by phase, beside its slowest scenario run alone.

    .venv/bin/python bench/verify_bench.py

The default run (every scenario and the lifecycle, the servers it starts itself) is timed from the lines
it prints (what a CI log shows): the static check and the lifecycle beside the round trip, the servers
up, the training (two notebooks at a time), Ray Serve up, the serving, and the signing when a signing
key is set and the images are in the registry (`make push`; else it runs with --no-record). Then each
scenario runs alone, and the default run's time is set beside the slowest of those: the target is 1.5x
or less. The machine's busy CPU time is counted too (/proc/stat: every process, the engine's and the
containers' included): on N cores, a run with C core-seconds of work takes at least C/N seconds however it
is overlapped, the floor of its ratio; the default run's CPU is also given per kind of container it ran
(from this machine's cgroups). bench/stored_bench.py times verify-stored.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from imagekit import config
from imagekit.containers import KIND_LABEL, RUN_LABEL, run_id
from imagekit.engine import Engine
from imagekit.verify.compat import verify_compat

ROOT = Path(__file__).resolve().parents[1]


def busy() -> float:
    """Core-seconds the machine has spent busy since boot (user, nice, system, irq, softirq; not idle, iowait
    or time stolen by the hypervisor)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def cgroup_cpu(container_id: str) -> float | None:
    """Core-seconds a container of this machine's engine has used (cgroup v1 or v2), None when not found."""
    for path, scale in ((f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage", 1e9),
                        (f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat", 1e6)):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        return int(text.split()[1] if text.startswith("usage_usec") else text) / scale
    return None


class ContainerCPU(threading.Thread):
    """Core-seconds per kind of container (imagekit's kind label) of this process's runs while they last,
    read every half second from the engine's cgroups: what a container used in its last half second may be
    missed."""

    def __init__(self, engine) -> None:
        super().__init__(daemon=True)
        self.engine, self.done, self.seen = engine, threading.Event(), {}  # container id -> (kind, core-s)

    def run(self) -> None:
        while not self.done.wait(0.5):
            for c in self.engine.client.containers.list(filters={"label": f"{RUN_LABEL}={run_id()}"}):
                if (used := cgroup_cpu(c.id)) is not None:
                    self.seen[c.id] = (c.labels[KIND_LABEL], used)

    def by_kind(self) -> dict[str, tuple[float, int]]:
        self.done.set()
        self.join()
        kinds: dict[str, tuple[float, int]] = {}
        for kind, used in self.seen.values():
            total, count = kinds.get(kind, (0.0, 0))
            kinds[kind] = (total + used, count + 1)
        return dict(sorted(kinds.items(), key=lambda kv: -kv[1][0]))


def timed(cfg, engine, **kw):
    """verify-compat's report, its seconds, when each line came (seconds from the start), and the machine's
    busy core-seconds meanwhile."""
    started, lines, cpu = time.monotonic(), [], busy()
    report = verify_compat(cfg, engine, on_line=lambda line: lines.append((time.monotonic() - started, line)), **kw)
    return report, time.monotonic() - started, lines, busy() - cpu


def main() -> None:
    cfg, engine = config.load(ROOT / "imagekit.toml"), Engine.connect()
    sign = bool(cfg.trust.signing_key)  # ~/.config/imagekit/imagekit.key or IMAGEKIT_TRUST_SIGNING_KEY
    containers = ContainerCPU(engine)
    containers.start()
    report, total, lines, work = timed(cfg, engine, write_record=sign)
    kinds = containers.by_kind()
    print(f"verify-compat, every scenario and the lifecycle: {total:.1f} s, ok={report.ok}"
          f"{'' if sign else ' (not signed: no signing key)'}; each step as the CI log shows it, from the start:")
    for t, line in lines:
        print(f"  {t:5.1f} s  {line[:100]}")
    print(f"  Ray Serve ready {report.roundtrip.ray_startup_seconds:.1f} s after it started (with the first model "
          f"published, beside the training); the lifecycle {report.lifecycle.seconds:.1f} s beside the round trip")
    for s in report.roundtrip.scenarios:
        print(f"  scenario {s.name:<19} trained in {s.train_seconds:5.1f} s (two at a time), served in "
              f"{s.serve_seconds:4.1f} s")
    print(f"  CPU of its containers ({sum(t for t, _ in kinds.values()):.0f} of its {work:.0f} core-s): " + ", ".join(
        f"{kind} {t:.1f} core-s" + (f" ({n})" if n > 1 else "") for kind, (t, n) in kinds.items()))
    runs = {s.name: timed(cfg, engine, scenarios=(s.name,), write_record=False) for s in report.roundtrip.scenarios}
    alone = {n: run[1] for n, run in runs.items()}
    slowest, cores = max(alone, key=alone.get), os.cpu_count()
    print("each scenario alone: " + ", ".join(f"{n} {t:.1f} s" for n, t in alone.items()))
    print(f"every scenario / the slowest alone ({slowest}): {total:.1f} / {alone[slowest]:.1f} s = "
          f"{total / alone[slowest]:.2f}x (target: 1.5x or less)")
    print(f"CPU: every scenario {work:.0f} core-s in {total:.1f} s ({work / total / cores:.0%} of {cores} cores), at "
          f"least {work / cores:.1f} s on {cores} cores, so {work / cores / alone[slowest]:.2f}x at best; the slowest "
          f"alone {runs[slowest][3]:.0f} core-s in {alone[slowest]:.1f} s")

if __name__ == "__main__":
    main()

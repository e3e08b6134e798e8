"""Time of the runtime contract and of the lifecycle scenario on the built pair, and the images' sizes.

    .venv/bin/python bench/runtime_bench.py

`imagekit runtime-check` (KubeRay head and worker with probes, JupyterHub spawning the notebook
image, the lifecycle) beside what a head alone takes to answer KubeRay's probes, the floor of any
such check; then verify-compat's `lifecycle` scenario alone (a head, a notebook deploying to it).
"""
from __future__ import annotations

import time
from pathlib import Path

from imagekit import build, config, containers, runtime, services
from imagekit.engine import Engine

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    cfg = config.load(ROOT / "imagekit.toml")
    engine = Engine.connect()
    built = {i.name: i for i in build.load_result(cfg).images}
    ray, notebook = built["ray"].image_id, built["notebook"].image_id
    report = runtime.check(engine, ray, notebook, lifecycle_notebooks=cfg.path(cfg.verify.lifecycle))
    assert report.ok, [i for i in report.items if not i.ok]
    with containers.Run(engine, "bench") as run:
        started = time.monotonic()
        head = run.start(services.RayNode(ray))
        runtime.until(head, runtime.GCS_PROBE, 120, every=0.2)
        floor = time.monotonic() - started
    started = time.monotonic()
    with runtime.lifecycle_head(engine, ray, notebook) as deploy:
        life = deploy(cfg.path(cfg.verify.lifecycle))
    t_life = time.monotonic() - started
    print(f"runtime-check, {len(report.items)} items                     {report.seconds:6.1f} s")
    for item in report.items:
        if item.seconds:
            print(f"  {item.check:<62} {item.seconds:6.1f} s")
    print(f"a head alone until KubeRay's GCS probe passes   {floor:6.1f} s   runtime-check {report.seconds / floor:.1f}x")
    print(f"verify-compat lifecycle scenario (head + notebook) {t_life:6.1f} s   ok={life.ok}")
    for name in ("ray", "notebook"):
        print(f"{name} image: {built[name].size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()

"""Promotion time for a small and a large image, beside `docker pull`+`tag`+`push` and `skopeo copy`.

    .venv/bin/python bench/promote_bench.py

Runs against a docker-registry of its own on a loopback port: the built Ray image (large) and a
hand-made 3-layer image (small) are put in desa with passing records, then each is promoted.
"""
from __future__ import annotations

import json
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


from imagekit import build, config, promote, push
from imagekit.testing import RegistryProcess, record_verified, seed_image
from imagekit.engine import Engine
from imagekit.registry import Registry


def timed(fn) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="imagekit-bench-") as tmp:
        reg_proc = RegistryProcess(Path(tmp) / "registry").start()
        try:
            cfg = config.load(ROOT / "imagekit.toml", env={"IMAGEKIT_REGISTRY_URL": reg_proc.host})
            engine, reg = Engine.connect(), Registry.from_config(cfg)
            ray = next(i for i in push.push(cfg, engine).images if i.name == "ray")
            record_verified(reg, "mlops-desa/ray", ray.digest)
            size = next(i.size for i in build.load_result(cfg).images if i.name == "ray")
            seed_image(reg, "mlops-desa/small", "v1", layers=3, verified=True)
            (Path(tmp) / "small.toml").write_text('[[environments]]\nname = "desa"\nproject = "mlops-desa"\n'
                                                  '[[environments]]\nname = "test"\nproject = "mlops-test"\n'
                                                  '[verify]\nimages = ["small"]\n[[images]]\nname = "small"\ntags = ["v1"]\n')
            scfg = config.load(Path(tmp) / "small.toml", env={"IMAGEKIT_REGISTRY_URL": reg_proc.host})
            t_small = timed(lambda: promote.promote(scfg, ["small:v1"], to="test"))
            t_large = timed(lambda: promote.promote(cfg, [f"ray:{ray.tags[0]}"], to="test"))
            src = f"{reg_proc.host}/mlops-desa/ray:{ray.tags[0]}"
            t_skopeo = timed(lambda: sh("skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                                        f"docker://{src}", f"docker://{reg_proc.host}/mlops-skopeo/ray:{ray.tags[0]}"))
            dst = f"{reg_proc.host}/mlops-docker/ray:{ray.tags[0]}"
            t_docker = timed(lambda: (sh("docker", "pull", src), sh("docker", "tag", src, dst), sh("docker", "push", dst)))
            sh("docker", "rmi", dst)
            other = RegistryProcess(Path(tmp) / "other").start()  # prod on a registry of its own: a streamed copy
            try:
                (Path(tmp) / "two.toml").write_text(ROOT.joinpath("imagekit.toml").read_text().replace(
                    'project = "mlops-test"', f'project = "mlops-test"\nregistry = "{other.host}"'))
                tcfg = config.load(Path(tmp) / "two.toml", env={"IMAGEKIT_REGISTRY_URL": reg_proc.host})
                tracemalloc.start()
                t_across = timed(lambda: promote.promote(tcfg, [f"ray:{ray.tags[0]}"], to="test"))
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                largest = max(d["size"] for d in json.loads(reg.manifest("mlops-desa/ray", ray.tags[0]).body)["layers"])
            finally:
                other.stop()
        finally:
            reg_proc.stop()
    print(f"imagekit promote, small image (3 layers, ~12 KB)         {t_small:6.2f} s")
    print(f"imagekit promote, large image (ray, {size / 1e6:.0f} MB)           {t_large:6.2f} s"
          f"   large/small {t_large / t_small:.1f}x")
    print(f"skopeo copy, large image                                 {t_skopeo:6.2f} s   {t_skopeo / t_large:6.1f}x imagekit")
    print(f"docker pull + tag + push, large (layers already local)   {t_docker:6.2f} s   {t_docker / t_large:6.1f}x imagekit")
    print(f"imagekit promote across registries, large (streamed)     {t_across:6.2f} s   peak Python memory "
          f"{peak / 1e6:.0f} MB; reading each blob whole needed at least its largest layer, {largest / 1e6:.0f} MB")


if __name__ == "__main__":
    main()

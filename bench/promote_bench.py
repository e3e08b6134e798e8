"""Promotion time for a small and a large image, beside `docker pull`+`tag`+`push` and `skopeo copy`.

    .venv/bin/python bench/promote_bench.py

Runs against a docker-registry of its own on a loopback port: the built Ray and notebook images
(large, promoted as the verified pair) and a hand-made 3-layer image (small) are put in desa with
signed attestations (a key made for the run), then promoted; the gate checks every signature.
Registry round trips are counted (HTTP requests, auth challenges included). The cost of writing
the attestation in cosign's two layouts (the bundle referrer alone, or with the legacy .att tag) is
measured on the small image: attaching it, and promoting with it.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from imagekit import build, config, promote, push, record
from imagekit.engine import Engine
from imagekit.registry import Registry
from imagekit.verify.policy import required_scenarios

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' support
from support import RegistryProcess, make_keys, record_verified, seed_image, sign_pair  # noqa: E402


CALLS = [0]


def counting(call):
    def wrapped(self, *a, **kw):
        CALLS[0] += 1
        return call(self, *a, **kw)
    return wrapped


Registry._call = counting(Registry._call)


def timed(fn) -> float:
    t = time.monotonic()
    fn()
    return time.monotonic() - t


def trips(fn) -> tuple[float, int]:
    CALLS[0] = 0
    seconds = timed(fn)
    return seconds, CALLS[0]


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="imagekit-bench-") as tmp:
        reg_proc = RegistryProcess(Path(tmp) / "registry").start()
        try:
            key, pub = make_keys(Path(tmp))
            env = {"IMAGEKIT_REGISTRY_URL": reg_proc.host, "IMAGEKIT_TRUST_PUBLIC_KEY": str(pub)}
            cfg = config.load(ROOT / "imagekit.toml", env=env)
            engine, reg = Engine.connect(), Registry.from_config(cfg)
            pushed = {i.name: i for i in push.push(cfg, engine).images}
            ray = pushed["ray"]
            record_verified(reg, key, {n: (pushed[n].repository.split("/", 1)[1], pushed[n].digest)
                                       for n in ("ray", "notebook")},
                            scenarios=tuple(n for n, _ in required_scenarios(cfg)))
            size = sum(i.size for i in build.load_result(cfg).images if i.name in ("ray", "notebook"))
            seed_image(reg, "mlops-desa/small", "v1", layers=3, verified=key, name="small")
            (Path(tmp) / "small.toml").write_text('[[environments]]\nname = "desa"\nproject = "mlops-desa"\n'
                                                  '[[environments]]\nname = "test"\nproject = "mlops-test"\n'
                                                  '[verify]\nimages = ["small"]\n[[images]]\nname = "small"\ntags = ["v1"]\n')
            scfg = config.load(Path(tmp) / "small.toml", env=env)
            t_small, n_small = trips(lambda: promote.promote(scfg, ["small:v1"], to="test"))
            layouts = {}
            for which in ((record.BUNDLE,), (record.BUNDLE, record.ATT)):
                repo = "small-" + "-".join(which)
                digest = seed_image(reg, f"mlops-desa/{repo}", "v1", layers=3)
                envelope = sign_pair(key, {"small": (f"mlops-desa/{repo}", digest)})
                attach = trips(lambda: record.write(reg, f"mlops-desa/{repo}", digest, envelope, which))
                (Path(tmp) / f"{repo}.toml").write_text((Path(tmp) / "small.toml").read_text().replace(
                    'name = "small"', f'name = "small"\nrepository = "{repo}"'))
                lcfg = config.load(Path(tmp) / f"{repo}.toml", env=env)
                layouts[which] = attach, trips(lambda: promote.promote(lcfg, ["small:v1"], to="test"))
            t_large, n_large = trips(lambda: promote.promote(cfg, [], all_images=True, to="test"))
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
                tcfg = config.load(Path(tmp) / "two.toml", env=env)
                tracemalloc.start()
                t_across = timed(lambda: promote.promote(tcfg, [], all_images=True, to="test"))
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                largest = max(d["size"] for d in json.loads(reg.manifest("mlops-desa/ray", ray.tags[0]).body)["layers"])
            finally:
                other.stop()
        finally:
            reg_proc.stop()
    print(f"imagekit promote, small image (3 layers, ~12 KB)         {t_small:6.2f} s   {n_small} round trips")
    (a1, p1), (a2, p2) = layouts.values()
    print(f"attach an attestation, bundle only / bundle + .att      {a1[0]:6.2f} s / {a2[0]:.2f} s   "
          f"{a1[1]} / {a2[1]} round trips (+{a2[1] - a1[1]} for the .att layout)")
    print(f"promote small image, bundle only / bundle + .att        {p1[0]:6.2f} s / {p2[0]:.2f} s   "
          f"{p1[1]} / {p2[1]} round trips (+{p2[1] - p1[1]} for the .att layout)")
    print(f"imagekit promote --all, ray + notebook ({size / 1e6:.0f} MB)       {t_large:6.2f} s   {n_large} round trips"
          f"   large/small {t_large / t_small:.1f}x")
    print(f"skopeo copy, ray image alone                             {t_skopeo:6.2f} s   {t_skopeo / t_large:6.1f}x imagekit")
    print(f"docker pull + tag + push, ray alone (layers local)       {t_docker:6.2f} s   {t_docker / t_large:6.1f}x imagekit")
    print(f"imagekit promote --all across registries (streamed)      {t_across:6.2f} s   peak Python memory "
          f"{peak / 1e6:.0f} MB; reading each blob whole needed at least its largest layer, {largest / 1e6:.0f} MB")


if __name__ == "__main__":
    main()

"""Concurrent writers of attestations to one digest on a registry without conditional writes (Debian's
docker-registry: the fallback referrers index and the .att tag are read, extended and written whole):
how many are lost, as one writer's PUTs reach the registry later and later after its read.

    .venv/bin/python bench/attest_race_bench.py [TRIALS]

Eight writers per trial, one of them through a front that holds each of its PUTs to those tags back by
DELAY seconds (a slow link); record.converge's quiet period is what the delay is measured against.
"""
from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' support

from support import RegistryFront, RegistryProcess, make_keys, seed_image, sign_pair  # noqa: E402

from imagekit import record  # noqa: E402
from imagekit.registry import Registry  # noqa: E402

REPO = "mlops-desa/ray"


def trial(host: str, slow: str, key: Path, n: int) -> tuple[int, int, float]:
    reg = Registry(host, scheme="http")
    digest = seed_image(reg, REPO, f"v{n}", layers=1)
    envelopes = [sign_pair(key, {"ray": (REPO, digest)}, scenarios=(f"run-{n}-{w}",)) for w in range(8)]
    started = time.monotonic()
    threads = [threading.Thread(target=record.write, args=(Registry(slow if w == 0 else host, scheme="http"), REPO,
                                                            digest, envelopes[w])) for w in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    found = record.read(reg, REPO, digest)
    return (8 - len([f for f in found if f.layout == record.BUNDLE]), 8 - len([f for f in found if f.layout == record.ATT]),
            time.monotonic() - started)


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    with tempfile.TemporaryDirectory() as tmp:
        registry = RegistryProcess(Path(tmp) / "registry").start()
        key, _ = make_keys(Path(tmp) / "keys")
        delay = [0.0]

        def hold(method: str, path: str):
            if method == "PUT" and "/manifests/sha256-" in path:
                time.sleep(delay[0])
            return None
        front = RegistryFront(registry.host, hold)
        try:
            print(f"quiet period {record.QUIET} s at least, stale after {record.STALE} s; 8 writers, {trials} trials each")
            for delay[0] in (0.0, 0.1, 0.2, 0.3, 0.5, 1.0):
                results = [trial(registry.host, front.host, key, n) for n in range(trials)]
                lost = sum(b + a for b, a, _ in results)
                print(f"  one writer's PUTs held back {delay[0]:.1f} s: {lost} of {16 * trials} attestations lost "
                      f"(bundle index {sum(b for b, _, _ in results)}, .att {sum(a for _, a, _ in results)}); "
                      f"{sum(s for *_, s in results) / trials:.1f} s per trial")
        finally:
            front.stop()
            registry.stop()


if __name__ == "__main__":
    main()

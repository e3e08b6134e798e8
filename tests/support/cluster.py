"""A Ray cluster of the tests' own: a head and workers from one image, started as KubeRay starts them."""
from __future__ import annotations

import contextlib

from imagekit import containers, services, wait
from imagekit.engine import Engine


@contextlib.contextmanager
def ray_cluster(engine: Engine, image: str, workers: int = 2, *, name: str = "cluster"):
    """A Ray head and ``workers`` workers from ``image`` on a run of their own (one CPU each), the head's
    client server published on this machine's loopback as a port-forward is: yields (its ray://
    address, the nodes)."""
    with containers.Run(engine, name) as run:
        head = run.start(services.RayNode(image, ports=(10001,)))
        nodes = [head, *(run.start(services.RayNode(image, head=False, alias=f"worker-{n}"))
                         for n in range(1, workers + 1))]

        def alive():
            code, out = head.exec(["python", "-c", services.ALIVE])
            return code == 0 and out.strip().splitlines()[-1] == str(workers + 1) or wait.Pending(out[-300:])
        wait.until(f"the {workers + 1}-node Ray cluster", alive, 120, gone=head.exited)
        yield head.url(10001).replace("http://", "ray://"), nodes

"""Servers a test starts as processes of its own on this machine: a free port, waiting until one listens
(said at once when its process exits), moto's S3 server."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from imagekit import wait

S3_SERVER = Path(__file__).resolve().parents[2] / "images" / "s3" / "s3server.py"  # the S3 stand-in's launcher


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(proc: subprocess.Popen, port: int, what: str, timeout: float = 30) -> None:
    """Wait until ``proc`` listens on 127.0.0.1:``port``: wait.NotReady at once when it exits, or after ``timeout``."""
    wait.until(what, lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, timeout,
               every=0.1, retry=(OSError,), gone=lambda: "" if proc.poll() is None else f"it exited ({proc.returncode})")


@contextlib.contextmanager
def moto_server(host: str = "127.0.0.1", launcher: tuple[str, ...] = (str(S3_SERVER),)) -> Iterator[int]:
    """moto's S3 server in a process of its own listening on ``host``: its port. ``launcher`` is Python's
    arguments before moto's own: by default the S3 stand-in's launcher (bench/s3_bench.py also passes moto's
    ``-m moto.server``). Not in the test's process: there it serves a third as many requests a second,
    sharing one interpreter with imagekit's relay."""
    port = free_port()
    server = subprocess.Popen([sys.executable, *launcher, "-H", host, "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        listening(server, port, f"moto's S3 server on {host}:{port}")
        yield port
    finally:
        server.kill()
        server.wait()

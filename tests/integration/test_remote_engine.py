"""verify-compat with the engine reached over TCP from another network namespace, the way a CI
job reaches a docker:dind service: the containers' ports are not on this process's 127.0.0.1."""
import json
import os
import secrets
import subprocess
import sys

import pytest
from helpers import ROOT

from imagekit import facts

RUN = secrets.randbelow(250)  # names and addresses of this run's own: concurrent runs do not collide
NS, HOST_IP, NS_IP = f"imagekit-remote-{os.getpid()}-{RUN}", f"10.213.{RUN}.1", f"10.213.{RUN}.2"
HOST_LINK, NS_LINK = f"ikr{RUN}h{os.getpid() % 1000}", f"ikr{RUN}n{os.getpid() % 1000}"  # at most 15 characters


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


FORWARDER = """
import socket, sys, threading

def pipe(a, b, requests=False):
    try:
        while data := a.recv(65536):
            if requests:
                for _ in range(data.count(b"/containers/create")):
                    print("create", flush=True)
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

listener = socket.create_server((sys.argv[1], 0))
print(listener.getsockname()[1], flush=True)
while True:
    client, _ = listener.accept()
    print("connection", flush=True)
    engine = socket.socket(socket.AF_UNIX)
    engine.connect("/var/run/docker.sock")
    threading.Thread(target=pipe, args=(client, engine, True), daemon=True).start()
    threading.Thread(target=pipe, args=(engine, client), daemon=True).start()
"""  # each TCP connection spliced to the engine's unix socket, in a process of its own; a line per container created


@pytest.fixture
def remote_engine():
    """A network namespace of the test's own, joined to this one by a veth pair; the engine's API
    on the host side's address. Yields DOCKER_HOST as a process in the namespace must write it, and
    the forwarder (it prints a line per connection to the engine)."""
    ip("netns", "del", NS, check=False)
    ip("link", "del", HOST_LINK, check=False)
    ip("netns", "add", NS)
    ip("link", "add", HOST_LINK, "type", "veth", "peer", "name", NS_LINK)
    ip("link", "set", NS_LINK, "netns", NS)
    ip("addr", "add", f"{HOST_IP}/30", "dev", HOST_LINK)
    ip("link", "set", HOST_LINK, "up")
    for args in (("addr", "add", f"{NS_IP}/30", "dev", NS_LINK), ("link", "set", NS_LINK, "up"),
                 ("link", "set", "lo", "up")):
        ip("netns", "exec", NS, "ip", *args)
    forwarder = subprocess.Popen([sys.executable, "-c", FORWARDER, HOST_IP], stdout=subprocess.PIPE, text=True)
    port = forwarder.stdout.readline().strip()
    yield f"tcp://{HOST_IP}:{port}", forwarder
    forwarder.kill()
    forwarder.wait()
    ip("link", "del", HOST_LINK, check=False)
    ip("netns", "del", NS, check=False)


def test_verify_compat_reaches_its_containers_through_a_remote_engine(cfg, engine, built, remote_engine, leftovers,
                                                                     tmp_path):
    before = leftovers()
    docker_host, forwarder = remote_engine
    cache = tmp_path / "cache"  # the run's cache without the images' kept facts: the static checks ask them
    cache.mkdir()
    for entry in cfg.cache_dir.iterdir():
        if entry.name != facts.KEPT:
            (cache / entry.name).symlink_to(entry)
    env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "DOCKER_HOST": docker_host,
           "IMAGEKIT_RUN_ID": os.environ["IMAGEKIT_RUN_ID"], "IMAGEKIT_CACHE_DIR": str(cache)}
    done = subprocess.run(["ip", "netns", "exec", NS, str(ROOT / ".venv" / "bin" / "imagekit"), "--config",
                           cfg.source, "verify-compat", "--scenario", "iris", "--no-record", "--json"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)["result"]
    assert report["ok"] and [s["name"] for s in report["roundtrip"]["scenarios"]] == ["iris"]
    forwarder.kill()
    said = forwarder.stdout.read().split()
    # every container the run started (S3 server, static checks, trainer, model server) was created through
    # DOCKER_HOST, not through the host's socket, which a process in the namespace could still open
    assert said.count("connection") >= 1 and said.count("create") >= 5, said
    assert leftovers() == before  # and nothing is left behind

"""verify-compat with the engine reached over TCP from another network namespace, the way a CI
job reaches a docker:dind service: the containers' ports are not on this process's 127.0.0.1."""
import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

NS, HOST_IP, NS_IP = "imagekit-remote-test", "10.213.7.1", "10.213.7.2"


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


FORWARDER = """
import socket, sys, threading

def pipe(a, b):
    try:
        while data := a.recv(65536):
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
    engine = socket.socket(socket.AF_UNIX)
    engine.connect("/var/run/docker.sock")
    threading.Thread(target=pipe, args=(client, engine), daemon=True).start()
    threading.Thread(target=pipe, args=(engine, client), daemon=True).start()
"""  # each TCP connection spliced to the engine's unix socket, in a process of its own


@pytest.fixture
def remote_engine():
    """A network namespace of the test's own, joined to this one by a veth pair; the engine's API
    on the host side's address. Yields DOCKER_HOST as a process in the namespace must write it."""
    ip("netns", "del", NS, check=False)
    ip("link", "del", "ikr-host", check=False)
    ip("netns", "add", NS)
    ip("link", "add", "ikr-host", "type", "veth", "peer", "name", "ikr-ns")
    ip("link", "set", "ikr-ns", "netns", NS)
    ip("addr", "add", f"{HOST_IP}/30", "dev", "ikr-host")
    ip("link", "set", "ikr-host", "up")
    for args in (("addr", "add", f"{NS_IP}/30", "dev", "ikr-ns"), ("link", "set", "ikr-ns", "up"),
                 ("link", "set", "lo", "up")):
        ip("netns", "exec", NS, "ip", *args)
    forwarder = subprocess.Popen([sys.executable, "-c", FORWARDER, HOST_IP], stdout=subprocess.PIPE, text=True)
    port = forwarder.stdout.readline().strip()
    yield f"tcp://{HOST_IP}:{port}"
    forwarder.kill()
    forwarder.wait()
    ip("link", "del", "ikr-host", check=False)
    ip("netns", "del", NS, check=False)


def test_verify_compat_reaches_its_containers_through_a_remote_engine(cfg, engine, built, remote_engine):
    before = {c.id for c in engine.client.containers.list(all=True)}
    env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "DOCKER_HOST": remote_engine,
           "TESTCONTAINERS_RYUK_DISABLED": "true"}
    done = subprocess.run(["ip", "netns", "exec", NS, str(ROOT / ".venv" / "bin" / "imagekit"), "--config",
                           cfg.source, "verify-compat", "--scenario", "iris", "--no-record", "--json"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)["result"]
    assert report["ok"] and [s["name"] for s in report["roundtrip"]["scenarios"]] == ["iris"]
    probe = subprocess.run(["ip", "netns", "exec", NS, "python3", "-c",
                            "import socket; socket.create_connection(('127.0.0.1', 5000), timeout=2)"],
                           capture_output=True)
    assert probe.returncode != 0  # this process's loopback is not the engine's: nothing was reached there
    assert {c.id for c in engine.client.containers.list(all=True)} == before  # and nothing is left behind

"""The S3 store a run uses: a server started on the run's network (MinIO or the stand-in), or the
user's endpoint (relayed for the containers when it is on this machine's loopback, forward.py);
a boto3 client from the host, the URL containers use, and the probes that say either is not there.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config as BotoConfig

from imagekit import forward
from imagekit.errors import EngineError, PreconditionError


@dataclass(frozen=True)
class Buckets:
    models: str = "cybersec-ml-models"
    eval: str = "cybersec-ml-eval"
    others: tuple[str, ...] = ("cybersec-ml-raw", "cybersec-ml-silver")


@dataclass(frozen=True)
class S3Server:
    image: str
    description: str
    command: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class Endpoint:
    """An S3 server of the user's own (--s3-endpoint): the platform's MinIO from CI, or a
    ``kubectl port-forward`` on this machine's loopback (relayed for the containers: forward.py)."""
    url: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)


class S3(contextlib.AbstractContextManager):
    """The S3 store: a server on the run's network (alias ``s3``), or the user's endpoint; a boto3
    client from here, and what containers are given to reach it (``inside``)."""

    def __init__(self, server: S3Server | Endpoint, network, keys: dict[str, str], inside: str = "") -> None:
        from testcontainers.core.container import DockerContainer

        self.server, self.container = server, None
        if isinstance(server, Endpoint):
            self.keys = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
                         "AWS_DEFAULT_REGION": keys["AWS_DEFAULT_REGION"]}
            self.url, self.inside = server.url, inside or server.url
            return
        self.keys = keys
        self.container = DockerContainer(server.image).with_command(server.command).with_network(network) \
            .with_network_aliases("s3").with_exposed_ports(9000)
        for k, v in {**server.env, **keys}.items():
            self.container.with_env(k, v)
        self.inside = "http://s3:9000"

    def __enter__(self) -> "S3":
        if self.container:
            self.container.start()
            c = self.container
            self.url = f"http://{c.get_container_host_ip()}:{c.get_exposed_port(9000)}"
        self.client = boto3.client("s3", endpoint_url=self.url, config=BotoConfig(retries={"max_attempts": 1}),
                                   region_name=self.keys["AWS_DEFAULT_REGION"],
                                   aws_access_key_id=self.keys["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=self.keys["AWS_SECRET_ACCESS_KEY"])
        if self.container:
            until(lambda: self.client.list_buckets(), 60, f"the S3 server at {self.url} did not answer")
            return self
        try:  # the user's: up or not, and these keys let in or not
            self.client.list_buckets()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise PreconditionError(f"the S3 endpoint {self.url} cannot be used: {type(e).__name__}: {e}",
                                    hint="check the URL and the keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); "
                                         "for a port-forward, that it is still running") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.container:
            self.container.stop()

    def ensure(self, bucket: str) -> None:
        if bucket not in {b["Name"] for b in self.client.list_buckets().get("Buckets", [])}:
            self.client.create_bucket(Bucket=bucket)

    def json(self, bucket: str, key: str) -> dict:
        return json.loads(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def metas(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys of every meta.json under ``prefix``."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith("/meta.json"))


@contextlib.contextmanager
def on_network():
    """(an ExitStack for the run's containers, a Docker network of the run's own), both gone at the end."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # the Ryuk image cannot be pulled everywhere
    from testcontainers.core.network import Network

    with contextlib.ExitStack() as stack:
        yield stack, stack.enter_context(Network())


def open_store(stack, s3: S3Server | Endpoint, network, note) -> S3:
    note(f"S3: {describe(s3)}")
    keys = {"AWS_ACCESS_KEY_ID": "imagekit", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
            "AWS_DEFAULT_REGION": "us-east-1"}
    return stack.enter_context(S3(s3, network, keys, inside=relay(stack, s3.url, "the S3 endpoint", note)
                                  if isinstance(s3, Endpoint) else ""))


def relay(stack, url: str, what: str, note) -> str:
    """The URL containers use for ``url``: itself, or a relay's on the engine's gateway for a loopback one."""
    if not forward.is_loopback(url):
        return url
    forward.require_local(url, what)
    import docker

    relayed = stack.enter_context(forward.Forwarder(url, forward.gateway(docker.from_env())))
    note(f"{what} {url} is on the loopback: relayed for the containers as {relayed.inside}")
    return relayed.inside


def reachable(container, url: str, what: str, given: str) -> None:
    """``url`` takes a TCP connection from inside ``container`` (a docker-py one), else the run stops
    before any work, naming the address."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    code, out = container.exec_run(["python", "-c", f"import socket; socket.create_connection(({parts.hostname!r}, "
                                                    f"{port}), timeout=5)"])
    if code != 0:
        last = (out.decode(errors="replace").strip().splitlines() or ["no answer"])[-1]
        raise PreconditionError(f"{what} {given} cannot be reached from inside a container (as {url}): {last}",
                                hint="check the address from this machine; a server must listen where the "
                                     "containers reach it (not a loopback of another machine)")


def describe(s3: S3Server | Endpoint) -> str:
    """What a report says the S3 server was."""
    return f"endpoint {s3.url}" if isinstance(s3, Endpoint) else s3.description


def until(probe, seconds: float, what: str, logs=None):
    """``probe()``'s first value that is not None (what it raises meanwhile: not up yet), or an
    EngineError "``what`` within N s" with ``logs()`` when given."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = probe()
            if value is not None:
                return value
        except Exception:  # the server is not up yet
            pass
        if time.monotonic() > deadline:
            raise EngineError(f"{what} within {seconds:.0f} s" + (f":\n{logs()}" if logs else ""))
        time.sleep(0.5)

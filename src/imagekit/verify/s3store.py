"""The S3 store a run uses: a server started in the run (MinIO where its image can be had, else the
stand-in: one choice, made here for verify-compat, verify-stored and doctor alike), or the user's
endpoint (relayed for the containers when it is on this machine's loopback, forward.py); a boto3
client from here, the URL containers use, and the probes that say either is not there.
"""
from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import botocore.exceptions

from imagekit import containers, forward, redact, services
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.errors import ConfigError, PreconditionError, UsageError
from imagekit.verify.subjects import built


@dataclass(frozen=True)
class Buckets:
    models: str = "cybersec-ml-models"
    eval: str = "cybersec-ml-eval"
    others: tuple[str, ...] = ("cybersec-ml-raw", "cybersec-ml-silver")


def buckets(cfg: Config) -> Buckets:
    return Buckets(cfg.verify.models_bucket, cfg.verify.eval_bucket, tuple(cfg.verify.buckets))


@dataclass(frozen=True)
class Server:
    """The S3 server a run starts: MinIO's image, or the stand-in's."""
    image: str
    description: str
    minio: bool


@dataclass(frozen=True)
class Endpoint:
    """An S3 server of the user's own (--s3-endpoint): the platform's MinIO from CI, or a
    ``kubectl port-forward`` on this machine's loopback (relayed for the containers: forward.py)."""
    url: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)


def choose(cfg: Config, engine: Engine) -> tuple[str, bool, str]:
    """(image, is it MinIO, why not MinIO): verify.minio_image where it is present or can be pulled, else
    the name of the stand-in image of imagekit.toml (verify.s3_standin), which the caller builds."""
    minio = cfg.verify.minio_image
    why = "verify.minio_image is not set" if not minio else "" if engine.image(minio) else engine.pull(minio)
    if not why:
        return minio, True, ""
    return cfg.image(cfg.verify.s3_standin).name, False, why  # ConfigError when imagekit.toml has no such image


def store_for(cfg: Config, engine: Engine, url: str | None, note: Callable[[str], None]) -> Server | Endpoint:
    """The user's endpoint (``url``, else verify.s3_endpoint), else the server a run starts: MinIO, or
    the stand-in built now (from cache when unchanged)."""
    url = url or cfg.verify.s3_endpoint
    if url:
        return endpoint(cfg, url)
    image, minio, why = choose(cfg, engine)
    if minio:
        return Server(image, f"MinIO ({image})", True)
    note(f"{cfg.verify.minio_image} cannot be had here ({why}); using the stand-in image '{image}'")
    standin = built(cfg, engine, image, note)
    return Server(standin.image_id, f"stand-in {standin.repository}:{standin.tags[0]} ({cfg.verify.minio_image} "
                                    f"unavailable)", False)


def endpoint(cfg: Config, url: str) -> Endpoint:
    """The user's S3 (--s3-endpoint / verify.s3_endpoint), keys from AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY as the platform's flows read them."""
    if "://" not in url:
        raise UsageError(f"--s3-endpoint {url!r} is not a URL", option="--s3-endpoint",
                         hint="e.g. https://minio.example.org or http://127.0.0.1:9000")
    access, secret = cfg.env.get("AWS_ACCESS_KEY_ID", ""), cfg.env.get("AWS_SECRET_ACCESS_KEY", "")
    if not (access and secret):
        raise ConfigError(f"the S3 endpoint {url} needs keys: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    redact.register(secret)
    forward.require_local(url, "the S3 endpoint")  # said before any work
    return Endpoint(url.rstrip("/"), access, secret)


class Store:
    """The run's S3: a boto3 client from here (``url``), what containers are given (``inside``, ``keys``)."""

    def __init__(self, url: str, inside: str, keys: dict[str, str], description: str) -> None:
        self.url, self.inside, self.keys, self.description = url, inside, keys, description
        self.client = services.s3_client(url, keys)

    def ensure(self, bucket: str) -> None:
        if bucket not in {b["Name"] for b in self.client.list_buckets().get("Buckets", [])}:
            self.client.create_bucket(Bucket=bucket)

    def json(self, bucket: str, key: str) -> dict:
        return json.loads(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def metas(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys of every meta.json under ``prefix``."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith("/meta.json"))


def open_store(run: containers.Run, s3: Server | Endpoint, note: Callable[[str], None]) -> Store:
    """The store of ``s3`` for the run: the server started in it (keys of the run's own), or the
    user's endpoint, asked whether it answers these keys."""
    note(f"S3: {describe(s3)}")
    if isinstance(s3, Endpoint):
        keys = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1"}
        store = Store(s3.url, relay(run, s3.url, "the S3 endpoint", note), keys, describe(s3))
        try:  # the user's: up or not, and these keys let in or not
            store.client.list_buckets()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise PreconditionError(f"the S3 endpoint {s3.url} cannot be used: {type(e).__name__}: {e}",
                                    hint="check the URL and the keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); "
                                         "for a port-forward, that it is still running") from None
        return store
    keys = {"AWS_ACCESS_KEY_ID": "imagekit", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
            "AWS_DEFAULT_REGION": "us-east-1"}
    redact.register(keys["AWS_SECRET_ACCESS_KEY"])
    server = run.start(services.S3Server(s3.image, keys, minio=s3.minio), ready=60)
    return Store(server.url(9000), server.inside(9000), keys, describe(s3))


def relay(run: containers.Run, url: str, what: str, note: Callable[[str], None]) -> str:
    """The URL containers use for ``url``: itself, or a relay's on the engine's gateway for a loopback one."""
    if not forward.is_loopback(url):
        return url
    forward.require_local(url, what)
    relayed = run.enter(forward.Forwarder(url, forward.gateway(run.engine.client)))
    note(f"{what} {url} is on the loopback: relayed for the containers as {relayed.inside}")
    return relayed.inside


def reachable(container: containers.Container, url: str, what: str, given: str) -> None:
    """``url`` takes a TCP connection from inside ``container``, else the run stops before any work,
    naming the address."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    probe = f"import socket; socket.create_connection(({parts.hostname!r}, {port}), timeout=5)"
    code, out = container.exec(container.python("-c", probe))
    if code != 0:
        last = (out.strip().splitlines() or ["no answer"])[-1]
        raise PreconditionError(f"{what} {given} cannot be reached from inside a container (as {url}): {last}",
                                hint="check the address from this machine; a server must listen where the "
                                     "containers reach it (not a loopback of another machine)")


def describe(s3: Server | Endpoint) -> str:
    """What a report says the S3 server was."""
    return f"endpoint {s3.url}" if isinstance(s3, Endpoint) else s3.description

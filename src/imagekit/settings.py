"""The settings of imagekit.toml: one frozen dataclass per section, its fields the section's keys
(type and default). Every key is also IMAGEKIT_<SECTION>_<KEY>; config.py reads and checks them."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProjectSettings:
    org: str = "org"
    version: int = 1
    source: str = ""


@dataclass(frozen=True)
class RegistrySettings:
    url: str = "127.0.0.1:5000"
    insecure: bool = False
    ca_bundle: str = ""
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class LockSettings:
    python: str = "3.11.2"
    platform: str = "x86_64-manylinux_2_36"
    index_url: str = "https://pypi.org/simple"
    index_username: str = ""
    index_password: str = field(default="", repr=False)
    find_links: str = ""
    dir: str = "lockfiles"
    resolver: str = "uv"


@dataclass(frozen=True)
class OsSettings:
    """The OS image every image builds on: taken when present or pullable, else bootstrapped."""
    image: str = ""  # an upstream image to take when present or pullable; "": debootstrap (it has what is needed)
    tag: str = "imagekit/os:bookworm-py311"
    mirror: str = "http://deb.debian.org/debian"
    suite: str = "bookworm"
    packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class CacheSettings:
    dir: str = "~/.cache/imagekit"


@dataclass(frozen=True)
class BuildSettings:
    installer: str = "uv"
    layer_buckets: int = 8
    layer_alone_mb: int = 4


@dataclass(frozen=True)
class VerifySettings:
    trainer: str = "notebook"
    server: str = "ray"
    images: tuple[str, ...] = ()  # the verified set; empty: trainer and server
    notebooks: str = "examples/notebooks"
    lifecycle: str = "examples/lifecycle"  # notebooks that deploy to a Ray head through Ray Client
    minio_image: str = "minio/minio:RELEASE.2025-09-07T16-13-09Z"
    s3_standin: str = "s3"
    s3_endpoint: str = ""
    models_bucket: str = "cybersec-ml-models"
    eval_bucket: str = "cybersec-ml-eval"
    buckets: tuple[str, ...] = ("cybersec-ml-raw", "cybersec-ml-silver")
    stored_batch_size: int = 100  # models per task of verify-stored: the memory bound of one process
    ray_address: str = ""  # verify-stored on a cluster (ray://HOST:10001); empty: a Ray of its own
    cluster_s3_endpoint: str = ""  # S3 as the cluster's nodes reach it; empty: s3_endpoint
    mlflow_uri: str = ""  # the team's MLflow tracking server, which verify-stored checks (verify-compat never logs there)
    mlflow_server: str = "mlflow"  # the image verify-compat starts as the tracking server of MLflow scenarios

    @property
    def verified_set(self) -> tuple[str, ...]:
        return self.images or (self.trainer, self.server)


@dataclass(frozen=True)
class TrustSettings:
    public_key: str = ""
    signing_key: str = field(default="", repr=False)  # a PEM file's path, or the PEM itself
    required_scenarios: tuple[str, ...] = ()  # "name" or "name@sha256:<hex>"; empty: verify.notebooks' notebooks


SECTIONS: dict[str, type] = {"project": ProjectSettings, "registry": RegistrySettings, "lock": LockSettings,
                             "os": OsSettings, "cache": CacheSettings, "build": BuildSettings,
                             "verify": VerifySettings, "trust": TrustSettings}
# Keys that only the environment may set: secrets never live in a committed file.
ENV_ONLY = {"registry.password", "lock.index_password", "trust.signing_key"}
CHOICES = {"lock.resolver": ("uv", "pip-tools"), "build.installer": ("uv", "pip")}

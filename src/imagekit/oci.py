"""OCI names and documents: image references, manifests, artifacts. Data only, no I/O."""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass

from imagekit import digests
from imagekit.errors import UsageError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digests.oci(b"{}"), "size": 2}
MANIFEST_TYPES = (OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json", OCI_INDEX,
                  "application/vnd.docker.distribution.manifest.list.v2+json")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Reference:
    """``[registry/]repository[:tag][@digest]``, as go-containerregistry's ``name`` package splits it."""
    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @classmethod
    def parse(cls, text: str, *, registry: str = "") -> "Reference":
        rest, _, digest = text.partition("@")
        if digest and not _DIGEST.match(digest):
            raise UsageError(f"{text!r}: {digest!r} is not a sha256 digest", hint="write @sha256:<64 hex digits>")
        first, slash, remainder = rest.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, rest = first, remainder
        name, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
        if not name:
            raise UsageError(f"{text!r} names no repository")
        return cls(registry=registry, repository=name, tag=tag, digest=digest)

    @property
    def ref(self) -> str:
        """What the registry API takes after /manifests/: the digest, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return ((f"{self.registry}/" if self.registry else "") + self.repository
                + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else ""))


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes

    @classmethod
    def of(cls, data: dict) -> "Manifest":
        body = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return cls(digests.oci(body), data.get("mediaType", OCI_MANIFEST), body)

    @property
    def data(self) -> dict:
        return json.loads(self.body)

    def blobs(self) -> list[str]:
        data = self.data
        return [d["digest"] for d in [data.get("config"), *data.get("layers", [])] if d]

    @property
    def config_digest(self) -> str:
        return self.data["config"]["digest"]

    @property
    def subject(self) -> str:
        """The digest this manifest refers to (OCI 1.1 ``subject``), "" when none."""
        return (self.data.get("subject") or {}).get("digest", "")

    def descriptor(self) -> dict:
        data = self.data
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.body),
                **{k: data[k] for k in ("artifactType", "annotations") if k in data}}


def artifact(artifact_type: str, payload: bytes, *, annotations: dict[str, str] | None = None) -> Manifest:
    """An OCI artifact manifest whose config blob is ``payload`` (no layers)."""
    data = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": artifact_type, "digest": digests.oci(payload), "size": len(payload)},
            "layers": []}
    if annotations:
        data["annotations"] = dict(annotations)
    return Manifest.of(data)


def referrer(artifact_type: str, payload: bytes, subject: Manifest, *,
             annotations: dict[str, str] | None = None) -> Manifest:
    """An OCI 1.1 artifact about ``subject``: the empty config, ``payload`` as its one layer."""
    data = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type, "config": EMPTY,
            "layers": [{"mediaType": artifact_type, "digest": digests.oci(payload), "size": len(payload)}],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.body)}}
    if annotations:
        data["annotations"] = dict(annotations)
    return Manifest.of(data)


def fallback_tag(digest: str) -> str:
    """The OCI 1.1 referrers tag schema: the index of what refers to ``digest`` (sha256-<hex>)."""
    return digest.replace(":", "-")


def is_local(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False

"""Verification records in the registry, next to the image: a tag like cosign's ``sha256-<hex>.verify``
naming an OCI artifact whose config blob is the record. Works on any OCI registry, Harbor included."""
from __future__ import annotations

import hashlib
import json

from imagekit.registry import Manifest, Registry

RECORD_TYPE = "application/vnd.imagekit.verification.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def tag_for(digest: str) -> str:
    return digest.replace(":", "-") + ".verify"


def write(reg: Registry, repo: str, digest: str, payload: dict) -> str:
    """Store ``payload`` as the verification record of ``repo@digest``; return the record's digest."""
    body = json.dumps(payload, sort_keys=True, indent=1).encode()
    blob = "sha256:" + hashlib.sha256(body).hexdigest()
    if not reg.has_blob(repo, blob):
        reg.upload_blob(repo, blob, body)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": RECORD_TYPE,
                           "config": {"mediaType": RECORD_TYPE, "digest": blob, "size": len(body)},
                           "layers": [], "annotations": {"org.imagekit.subject": digest}}, sort_keys=True).encode()
    return reg.put_manifest(repo, tag_for(digest), Manifest(digest="sha256:" + hashlib.sha256(manifest).hexdigest(),
                                                            media_type=OCI_MANIFEST, body=manifest))


def read(reg: Registry, repo: str, digest: str) -> dict | None:
    """The record of ``repo@digest``, or None when there is none."""
    found = reg.manifest(repo, tag_for(digest))
    if found is None:
        return None
    return json.loads(reg.blob(repo, json.loads(found.body)["config"]["digest"]))

"""Verification records in the registry, next to the image: a tag like cosign's ``sha256-<hex>.verify``
naming an OCI artifact whose config blob is the record. Works on any OCI registry, Harbor included."""
from __future__ import annotations

import json

from imagekit.registry import Registry

RECORD_TYPE = "application/vnd.imagekit.verification.v1+json"


def tag_for(digest: str) -> str:
    return digest.replace(":", "-") + ".verify"


def write(reg: Registry, repo: str, digest: str, payload: dict) -> str:
    """Store ``payload`` as the verification record of ``repo@digest``; return the record's digest."""
    body = json.dumps(payload, sort_keys=True, indent=1).encode()
    return reg.put_artifact(repo, tag_for(digest), RECORD_TYPE, body, annotations={"org.imagekit.subject": digest})


def read(reg: Registry, repo: str, digest: str) -> dict | None:
    """The record of ``repo@digest``, or None when there is none."""
    return reg.get_artifact(repo, tag_for(digest))

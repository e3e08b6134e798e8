"""Verification records in the registry, next to the image: a signed attestation (attest.py) stored
as an OCI 1.1 artifact whose ``subject`` is the image, one per image of the verified set. Found
through the referrers API, or the spec's fallback index tag ``sha256-<hex>`` where the registry has
no such API (Debian's docker-registry); works on Harbor either way.
"""
from __future__ import annotations

import base64
import json

from imagekit import attest
from imagekit.errors import RegistryError
from imagekit.oci import Manifest, referrer
from imagekit.registry import Registry


def write(reg: Registry, repo: str, digest: str, envelope: dict) -> str:
    """Attach ``envelope`` to ``repo@digest``; return the attestation manifest's digest."""
    subject = reg.manifest(repo, digest)
    if subject is None:
        raise RegistryError(f"{repo}@{digest} is not in {reg.host}: nothing to attach an attestation to")
    body = json.dumps(envelope, sort_keys=True).encode()
    predicate = json.loads(base64.b64decode(envelope["payload"])).get("predicateType", "")
    manifest = referrer(attest.ENVELOPE_TYPE, body, subject, annotations={"predicateType": predicate})
    for data in (b"{}", body):  # the empty config, the envelope
        reg.put_blob(repo, data)
    reg.attach(repo, manifest)
    return manifest.digest


def read(reg: Registry, repo: str, digest: str) -> list[tuple[Manifest, dict]]:
    """Every attestation attached to ``repo@digest``: (its manifest, its envelope)."""
    found = []
    for desc in reg.referrers(repo, digest, attest.ENVELOPE_TYPE):
        manifest = reg.manifest(repo, desc["digest"])
        if manifest is None:
            continue
        try:
            envelope = json.loads(reg.blob(repo, manifest.data["layers"][0]["digest"]))
        except (KeyError, IndexError, ValueError):
            envelope = {}
        found.append((manifest, envelope))
    return found


def verdicts(reg: Registry, repo: str, digest: str, public) -> list[tuple[Manifest, attest.Verdict]]:
    """What each attestation of ``repo@digest`` says when checked against the trusted key."""
    return [(m, attest.check(e, digest, public) if m.subject == digest
             else attest.Verdict(None, f"is attached to {m.subject}, not to it")) for m, e in read(reg, repo, digest)]

"""Verification records in the registry, next to the image: a tag like cosign's ``sha256-<hex>.verify``
naming an OCI artifact whose config blob is the record. Works on any OCI registry, Harbor included.

A record is about a pair: the notebook and Ray images verify-compat ran together. The gate lets a
digest through only on a passing record that names that very digest.
"""
from __future__ import annotations

import datetime
import json

from imagekit.registry import Registry

RECORD_TYPE = "application/vnd.imagekit.verification.v1+json"


def tag_for(digest: str) -> str:
    return digest.replace(":", "-") + ".verify"


def payload(*, passed: bool, lock: str, python: str, s3_server: str, subjects: dict[str, tuple[str, str]],
            scenarios: dict[str, dict]) -> dict:
    """The record verify-compat writes: ``subjects`` maps a role to (repository, digest)."""
    return {"passed": passed, "lock": lock, "python": python, "s3_server": s3_server,
            **{role: {"repository": repo, "digest": digest} for role, (repo, digest) in subjects.items()},
            "scenarios": scenarios,
            "verified_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def write(reg: Registry, repo: str, digest: str, data: dict) -> str:
    """Store ``data`` as the verification record of ``repo@digest``; return the record's digest."""
    body = json.dumps(data, sort_keys=True, indent=1).encode()
    return reg.put_artifact(repo, tag_for(digest), RECORD_TYPE, body, annotations={"org.imagekit.subject": digest})


def read(reg: Registry, repo: str, digest: str) -> dict | None:
    """The record of ``repo@digest``, or None when there is none."""
    return reg.get_artifact(repo, tag_for(digest))


def refusal(data: dict | None, digest: str) -> str | None:
    """Why ``data`` does not let ``digest`` through the gate; None when it does."""
    if data is None:
        return "has no verification record"
    if data.get("passed") is not True:
        return "has a verification record that did not pass"
    named = {role: value.get("digest") for role, value in data.items() if isinstance(value, dict) and "digest" in value}
    if digest not in named.values():
        about = ", ".join(f"{role} {d}" for role, d in named.items() if d) or "no digest at all"
        return f"has a verification record about another pair ({about})"
    return None

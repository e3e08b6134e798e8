"""Verification records in the registry, next to the image, in the two layouts cosign writes and the
platform's admission controllers read (cosign's specs/BUNDLE_SPEC.md and specs/ATTESTATION_SPEC.md):

- ``bundle`` (canonical: what the promotion gate reads): a sigstore bundle v0.3 holding the signed
  envelope, stored as an OCI 1.1 artifact whose ``subject`` is the image (artifactType and layer
  mediaType application/vnd.dev.sigstore.bundle.v0.3+json, the empty config, annotations
  ``dev.sigstore.bundle.content`` and ``dev.sigstore.bundle.predicateType``); found through the
  referrers API, or the spec's fallback index tag ``sha256-<hex>`` where the registry has none
  (Debian's docker-registry). One manifest per attestation, indexed by the registry: no shared tag
  to race on, and Harbor (2.15+) shows it as the image's cosign signature. Read by cosign 3, Kyverno
  ``type: SigstoreBundle``.
- ``att`` (legacy): the tag ``sha256-<hex>.att``, an OCI image manifest with one layer per
  attestation (the bare envelope, mediaType application/vnd.dsse.envelope.v1+json, annotations
  ``predicateType`` and ``dev.cosignproject.cosign/signature: ""``); new attestations are appended.
  Read by cosign without the bundle format, Kyverno ``type: Cosign`` and sigstore policy-controller.
"""
from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from imagekit import attest, digests
from imagekit.errors import RegistryError
from imagekit.oci import OCI_INDEX, OCI_MANIFEST, Manifest, referrer
from imagekit.registry import Registry, fallback_tag

BUNDLE, ATT = "bundle", "att"
LAYOUTS = {BUNDLE: "sigstore bundle v0.3 referrer", ATT: "cosign legacy sha256-<hex>.att tag"}
CANONICAL = BUNDLE
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
T = TypeVar("T")
STALE, QUIET = 0.1, 0.15  # seconds at least (a slower registry: longer, by its round trip): see converge


def att_tag(digest: str) -> str:
    return f"{fallback_tag(digest)}.att"


@dataclass(frozen=True)
class Found:
    """One attestation of an image as stored: its layout, where (a manifest digest, or the .att
    tag's layer digest), the digest it is attached to, and the envelope it carries."""
    layout: str
    where: str
    attached_to: str
    envelope: dict
    manifest: Manifest  # the bundle's referrer manifest, or the whole .att manifest
    layer: dict  # the descriptor of the blob that holds it
    error: str = ""  # why its blob could not be read from the registry (a 401, a 500, no answer)


def _predicate(envelope: dict) -> str:
    try:
        return json.loads(base64.b64decode(envelope["payload"])).get("predicateType", "")
    except (KeyError, TypeError, ValueError, AttributeError):
        return ""


def write(reg: Registry, repo: str, digest: str, envelope: dict, layouts: tuple[str, ...] = (BUNDLE, ATT)) -> str:
    """Attach ``envelope`` to ``repo@digest`` in ``layouts`` (both by default); return the bundle
    manifest's digest (the .att layer's where only that layout is written)."""
    subject = reg.manifest(repo, digest)
    if subject is None:
        raise RegistryError(f"{repo}@{digest} is not in {reg.host}: nothing to attach an attestation to")
    predicate = _predicate(envelope)

    def att() -> str:
        body = json.dumps(envelope, sort_keys=True).encode()
        written = reg.put_blob(repo, body)
        append_att(reg, repo, digest, [{"mediaType": attest.ENVELOPE_TYPE, "digest": written, "size": len(body),
                                        "annotations": {"predicateType": predicate, SIGNATURE_ANNOTATION: ""}}])
        return written

    def bundle() -> str:
        body = json.dumps(attest.bundle(envelope), sort_keys=True).encode()
        manifest = referrer(attest.BUNDLE_TYPE, body, subject, annotations={
            "dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": predicate})
        for data in (b"{}", body):  # the empty config, the bundle
            reg.put_blob(repo, data)
        attach(reg, repo, manifest)
        return manifest.digest
    return ([""] + together(*(f for layout, f in ((ATT, att), (BUNDLE, bundle)) if layout in layouts)))[-1]


def together(*calls: Callable[[], T]) -> list[T]:
    """Each call's answer, the calls made at the same time (each layout's tag converges on its own, and
    each image's: their quiet windows overlap); the first failure is raised once all have ended."""
    with ThreadPoolExecutor(max(len(calls), 1), thread_name_prefix="record") as pool:
        return list(pool.map(lambda call: call(), calls))


def att_manifest(layers: list[dict]) -> tuple[Manifest, bytes]:
    """The legacy .att manifest of ``layers`` and its config (what go-containerregistry's empty
    image gives once the layers are appended)."""
    config = json.dumps({"architecture": "", "created": "0001-01-01T00:00:00Z", "os": "", "config": {},
                         "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers],
                         "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layers]}},
                        sort_keys=True).encode()
    return Manifest.of({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": CONFIG_TYPE, "digest": digests.oci(config), "size": len(config)},
                        "layers": layers}), config


def converge(read, write, mine: list[dict], what: str) -> None:
    """Make the descriptors ``mine`` listed where ``read()`` reads a list that ``write(listed)`` replaces
    whole (a registry without conditional writes: another writer's PUT, made from what it read before
    ours landed, may drop ours). Write the union of what is there and what is missing, never from a read
    older than STALE (read again instead); then read on until every one of ours has stayed listed for
    QUIET past that, so a writer who read before ours landed has written, and ours is written again if
    that dropped it. docs/attestations.md says what window remains."""
    started, rtt, since = time.monotonic(), 0.0, None
    while time.monotonic() - started < 60:
        read_at = time.monotonic()
        held = read()
        rtt = max(rtt, time.monotonic() - read_at)
        stale = max(STALE, 2 * rtt)
        quiet = max(QUIET, stale + 2 * rtt)
        missing = [d for d in mine if d["digest"] not in {h.get("digest") for h in held}]
        if not missing:
            since = since or read_at
            if time.monotonic() - since >= quiet:
                return
            time.sleep(0.05)
            continue
        since = None
        if time.monotonic() - read_at < stale:  # what we read is fresh: write it with ours
            write([*held, *missing])
            rtt = max(rtt, time.monotonic() - read_at)  # a slow write: watch longer for what it may drop
    raise RegistryError(f"{what} kept changing for a minute while an attestation was added to it; run again")


def attach(reg: Registry, repo: str, manifest: Manifest) -> None:
    """A referrer stored, and listed in its subject's fallback index where the registry indexes none."""
    if reg.put_referrer(repo, manifest):
        return
    tag = fallback_tag(manifest.subject)
    converge(lambda: reg.fallback_index(repo, manifest.subject),
             lambda listed: reg.put_manifest(repo, tag, Manifest.of({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                                     "manifests": listed})),
             [manifest.descriptor()], f"{repo}:{tag}")


def append_att(reg: Registry, repo: str, digest: str, layers: list[dict]) -> None:
    """Add ``layers`` (their blobs already there) to ``repo``'s .att manifest of ``digest``, keeping
    every layer it holds (another writer may race: converge)."""
    tag = att_tag(digest)

    def write(listed: list[dict]) -> None:
        manifest, config = att_manifest(listed)
        reg.put_blob(repo, config)
        reg.put_manifest(repo, tag, manifest)
    converge(lambda: (m.data.get("layers", []) if (m := reg.manifest(repo, tag)) else []), write, layers,
             f"{repo}:{tag}")


def read(reg: Registry, repo: str, digest: str) -> list[Found]:
    """Every attestation attached to ``repo@digest``, in both layouts."""
    found = []
    for desc in reg.referrers(repo, digest, attest.BUNDLE_TYPE):
        manifest = reg.manifest(repo, desc["digest"])
        if manifest is None:
            continue
        layer = (manifest.data.get("layers") or [{}])[0]
        data, error = _blob(reg, repo, layer)
        found.append(Found(BUNDLE, manifest.digest, manifest.subject, attest.unbundle(data), manifest, layer, error))
    att = reg.manifest(repo, att_tag(digest))
    for layer in (att.data.get("layers") or []) if att else []:
        if layer.get("mediaType") == attest.ENVELOPE_TYPE:
            data, error = _blob(reg, repo, layer)
            found.append(Found(ATT, layer.get("digest", ""), digest, data, att, layer, error))
    return found


def _blob(reg: Registry, repo: str, layer: dict) -> tuple[dict, str]:
    """The JSON object a blob holds ({} when it is not one), and why it could not be read ("" when it could)."""
    try:
        data = json.loads(reg.blob(repo, layer["digest"]))
    except RegistryError as e:
        return {}, e.message
    except (KeyError, ValueError):
        return {}, ""
    return (data if isinstance(data, dict) else {}), ""


def verdicts(reg: Registry, repo: str, digest: str, public) -> list[tuple[Found, attest.Verdict]]:
    """What each attestation of ``repo@digest``, in either layout, says when checked against the
    trusted key."""
    return [(f, attest.Verdict(None, f"could not be read from the registry: {f.error}") if f.error else
             attest.check(f.envelope, digest, public) if f.attached_to == digest
             else attest.Verdict(None, f"is attached to {f.attached_to}, not to it")) for f in read(reg, repo, digest)]


def copy(dst: Registry, dst_repo: str, digest: str, found: list[Found], copy_blobs) -> None:
    """Attach ``found`` (attestations of ``digest`` elsewhere) to ``digest`` in dst_repo, each in
    its own layout; ``copy_blobs(manifest)`` makes a manifest's blobs exist in dst_repo."""
    layers = [f.layer for f in found if f.layout == ATT]

    def bundles() -> None:  # one after another: where the registry has no referrers API they share one index
        for f in found:
            if f.layout == BUNDLE:
                copy_blobs(f.manifest)
                attach(dst, dst_repo, f.manifest)

    def att() -> None:
        if layers:
            copy_blobs(Manifest.of({"schemaVersion": 2, "layers": layers}))
            append_att(dst, dst_repo, digest, layers)
    together(bundles, att)

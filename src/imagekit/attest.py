"""Signed attestations: an in-toto Statement v1 in a DSSE envelope, signed with ECDSA P-256.

The envelope is what `cosign attest --key --type <predicate type>` signs (payloadType
application/vnd.in-toto+json, base64 payload, DER ECDSA-SHA256 signatures over the DSSE
pre-authentication encoding). It travels in the two layouts cosign writes and the platform's
admission controllers read (record.py): inside a sigstore bundle v0.3 (``bundle``: the public key's
hint, no transparency-log entry) and bare, as a layer of the legacy ``sha256-<hex>.att`` manifest.
The predicate is imagekit's own (PREDICATE_TYPE): the verified set's digests, the lock, Python, the
S3 server and every scenario's result; SLSA's verification_summary has no place for the pair.

Keys: the private key is a PEM (PKCS#8 or SEC1, unencrypted) from a file or the environment, never
from imagekit.toml; the public key is a PEM file named by trust.public_key. A signature's keyid is
the sha256 of the public key's DER (SubjectPublicKeyInfo), so a refusal can say "another key".
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from imagekit import files, redact
from imagekit.config import Config
from imagekit.errors import ConfigError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://imagekit.dev/verify-compat/v1"
ENVELOPE_TYPE = "application/vnd.dsse.envelope.v1+json"  # a bare envelope (the legacy .att layer)
BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"  # a sigstore bundle (artifact and layer type)


def keyid(public: ec.EllipticCurvePublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _pem(value: str, key: str) -> bytes:
    """``value`` is a PEM or the path of a file holding one."""
    if "-----BEGIN" in value:
        redact.register(value)
        return value.encode()
    path = os.path.expanduser(value)
    if not os.path.isfile(path):
        raise ConfigError(f"key file not found: {path}", key=key,
                          hint="see docs/attestations.md, 'Signing keys'")
    with open(path, "rb") as f:
        return f.read()


def load_public(value: str, key: str = "trust.public_key") -> ec.EllipticCurvePublicKey:
    try:
        public = serialization.load_pem_public_key(_pem(value, key))
    except ValueError as e:
        raise ConfigError(f"not a PEM public key: {e}", key=key) from None
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise ConfigError("the public key is not an ECDSA P-256 key", key=key)
    return public


def load_private(value: str, key: str = "trust.signing_key") -> ec.EllipticCurvePrivateKey:
    try:
        private = serialization.load_pem_private_key(_pem(value, key), password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"not an unencrypted PEM private key: {str(e).splitlines()[0]}", key=key,
                          hint="give the key as PKCS#8 or SEC1 PEM without a passphrase") from None
    if not isinstance(private, ec.EllipticCurvePrivateKey) or private.curve.name != "secp256r1":
        raise ConfigError("the signing key is not an ECDSA P-256 key", key=key)
    return private


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(subjects: dict[str, tuple[str, str]], *, passed: bool, lock: str, python: str, s3_server: str,
              scenarios: dict[str, dict], counts: dict[str, int] | None = None) -> dict:
    """The statement verify-compat signs; ``subjects`` maps an image name to (repository, digest);
    ``scenarios`` what ran (each with its notebook's sha256), ``counts`` how many of each kind."""
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": repo, "digest": {"sha256": digest.removeprefix("sha256:")}}
                        for repo, digest in subjects.values()],
            "predicateType": PREDICATE_TYPE,
            "predicate": {"passed": passed, "images": {name: digest for name, (_, digest) in subjects.items()},
                          "lock": lock, "python": python, "s3_server": s3_server, "scenarios": scenarios,
                          "counts": counts or {"round_trip": len(scenarios)},
                          "verified_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")}}


def sign(data: dict, private: ec.EllipticCurvePrivateKey) -> dict:
    payload = json.dumps(data, sort_keys=True).encode()
    sig = private.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": keyid(private.public_key()), "sig": base64.b64encode(sig).decode()}]}


def bundle(envelope: dict) -> dict:
    """The sigstore bundle v0.3 of a signed envelope, as `cosign attest --key` writes it: the key
    named by its hint (our keyid), no transparency-log entry, no timestamp (verifiers are told so:
    `--insecure-ignore-tlog`, Kyverno's ``rekor.ignoreTlog``)."""
    sigs = envelope.get("signatures") or [{}]
    return {"mediaType": BUNDLE_TYPE,
            "verificationMaterial": {"publicKey": {"hint": sigs[0].get("keyid", "")}, "tlogEntries": []},
            "dsseEnvelope": envelope}


def unbundle(data: dict) -> dict:
    """The DSSE envelope a sigstore bundle carries ({} when it carries none)."""
    if data.get("mediaType") != BUNDLE_TYPE or not isinstance(data.get("dsseEnvelope"), dict):
        return {}
    return data["dsseEnvelope"]


@dataclass(frozen=True)
class Verdict:
    """What one envelope says about one digest: its statement when it may pass, else why not."""
    statement: dict | None
    why: str = ""

    @property
    def images(self) -> dict[str, str]:
        return (self.statement or {}).get("predicate", {}).get("images", {})


def check(envelope: dict, digest: str, public: ec.EllipticCurvePublicKey) -> Verdict:
    """Signature first (by the trusted key, over this very payload), then what it says: about
    ``digest``, a statement of ours, passed."""
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        sigs = list(envelope.get("signatures") or [])
    except (KeyError, TypeError, ValueError):
        return Verdict(None, "is not a DSSE envelope")
    if not sigs:
        return Verdict(None, "is unsigned")
    trusted, seen = keyid(public), []
    for s in sigs:
        try:
            public.verify(base64.b64decode(s.get("sig", "")), pae(envelope.get("payloadType", ""), payload),
                          ec.ECDSA(hashes.SHA256()))
            break
        except (InvalidSignature, ValueError):
            seen.append(s.get("keyid", ""))
    else:
        if trusted in seen:
            return Verdict(None, "does not match its signature: the payload was changed after signing (tampered)")
        return Verdict(None, f"is signed by another key (keyid {', '.join(k[:12] or '?' for k in seen)}, "
                             f"trusted {trusted[:12]})")
    try:
        data = json.loads(payload)
    except ValueError:
        return Verdict(None, "has a signed payload that is not JSON")
    if data.get("predicateType") != PREDICATE_TYPE:
        return Verdict(None, f"is of another kind ({data.get('predicateType')})")
    about = {"sha256:" + s.get("digest", {}).get("sha256", "") for s in data.get("subject", [])}
    if digest not in about or digest not in data["predicate"].get("images", {}).values():
        return Verdict(None, f"is about other digests ({', '.join(sorted(about))}): copied from another image")
    if data["predicate"].get("passed") is not True:
        return Verdict(None, "says verification did not pass")
    return Verdict(data)


def uncovered(statement: dict, required: list[tuple[str, str]]) -> list[str]:
    """Where ``statement`` falls short of the coverage policy: each required scenario (name, pinned
    notebook sha256 or "") missing, failed, or run from another notebook than the one pinned."""
    ran = statement.get("predicate", {}).get("scenarios") or {}
    short = []
    for name, pinned in required:
        result = ran.get(name)
        if not isinstance(result, dict):
            short.append(f"does not cover the required scenario {name}")
        elif result.get("passed") is not True:
            short.append(f"says the required scenario {name} did not pass")
        elif pinned and result.get("notebook_sha256") != pinned:
            short.append(f"ran {name} from a notebook with sha256 {str(result.get('notebook_sha256'))[:12]}, "
                         f"not the one trust.required_scenarios pins ({pinned[:12]})")
    return short


def trusted_key(cfg: Config) -> ec.EllipticCurvePublicKey:
    """The public key the promotion gate trusts (trust.public_key): without one nothing is promoted."""
    if not cfg.trust.public_key:
        raise ConfigError("trust.public_key is not set: the promotion gate cannot tell who verified an image",
                          key="trust.public_key", hint="make a key pair (docs/attestations.md, 'Signing keys') "
                                                       "and name the public key in imagekit.toml [trust]")
    return load_public(str(cfg.path(cfg.trust.public_key)))


def signing_key(cfg: Config) -> ec.EllipticCurvePrivateKey | None:
    """The key verify-compat signs with (IMAGEKIT_TRUST_SIGNING_KEY: a PEM file's path, or the PEM)."""
    return load_private(cfg.trust.signing_key) if cfg.trust.signing_key else None


def make_pair(private: Path, public: Path) -> tuple[Path, Path]:
    """A new ECDSA P-256 key pair: the private key (PKCS#8 PEM, mode 600, never over an existing one) and
    the public key (PEM, to commit)."""
    if private.exists():
        raise ConfigError(f"{private} exists: a signing key is not replaced by accident",
                          hint="remove it first, or pass --private PATH for another one")
    key = ec.generate_private_key(ec.SECP256R1())
    private.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    files.write(public, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public

"""Signing keys as the README makes them, and attestations signed with them as verify-compat signs."""
from __future__ import annotations

from pathlib import Path


def make_keys(folder: Path, name: str = "imagekit") -> tuple[Path, Path]:
    """An ECDSA P-256 key pair as the README makes it: (<name>.key PKCS#8 PEM, <name>.pub PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP256R1())
    key, pub = folder / f"{name}.key", folder / f"{name}.pub"
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    pub.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, pub


def sign_pair(key: Path, pair: dict[str, tuple[str, str]], *, passed: bool = True,
              scenarios: tuple[str, ...] = ("iris",)) -> dict:
    """The envelope verify-compat would sign for ``pair`` (name -> (repo, digest)) with ``key``,
    for a run of ``scenarios``."""
    from imagekit import attest

    return attest.sign(attest.statement(pair, passed=passed, lock="0" * 64, python="3.11.2", s3_server="test",
                                        scenarios={n: {"passed": passed} for n in scenarios}),
                       attest.load_private(str(key)))


def record_verified(reg, key: Path, pair: dict[str, tuple[str, str]], *, passed: bool = True,
                    scenarios: tuple[str, ...] = ("iris",)) -> dict:
    """A signed attestation that ``pair`` passed verify-compat together (a run of ``scenarios``),
    attached to each of its digests as verify-compat attaches it. Returns the envelope."""
    from imagekit import record

    envelope = sign_pair(key, pair, passed=passed, scenarios=scenarios)
    for repo, digest in pair.values():
        record.write(reg, repo, digest, envelope)
    return envelope

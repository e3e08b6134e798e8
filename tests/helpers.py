"""Test helpers shared by unit and integration tests (the rest lives in imagekit.testing, which the
benchmarks use too)."""
from __future__ import annotations

from pathlib import Path

import pytest

from support import RegistryProcess, make_htpasswd, make_tls, make_wheel, seed_image, write_project

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["ROOT", "RegistryProcess", "make_htpasswd", "make_tls", "make_wheel", "run_cli", "seed_image",
           "write_project"]


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``imagekit ARGS`` through the real entry point; return exit code, stdout, stderr."""
    from imagekit.cli import main

    monkeypatch.setattr("sys.argv", ["imagekit", *args])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    return e.value.code or 0, captured.out, captured.err


VERIFIERS = ROOT / "tests" / "verifiers"


def sigstore_js(bundle: dict, pub: Path, digest: str, tmp: Path) -> dict:
    """sigstore-js (@sigstore/verify) checks ``bundle`` with the public key, as `cosign
    verify-attestation --key --insecure-ignore-tlog --type <imagekit's predicate>` would:
    {"ok": True, "predicate": ...} or {"ok": False, "error": ...}."""
    import json
    import subprocess

    from imagekit import attest

    path = tmp / "bundle.json"
    path.write_text(json.dumps(bundle))
    done = subprocess.run(["node", str(VERIFIERS / "verify-bundle.js"), str(path), str(pub), attest.PREDICATE_TYPE,
                           digest], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip(), f"the node verifier printed nothing: {done.stderr[-500:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def securesystemslib_verifies(envelope: dict, pub: Path) -> bool:
    """securesystemslib's DSSE implementation verifies ``envelope`` with the public key (an ECDSA
    P-256 key known under imagekit's keyid, the sha256 of its DER)."""
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    from imagekit import attest

    public = serialization.load_pem_public_key(pub.read_bytes())
    key = SSlibKey.from_crypto(public, keyid=attest.keyid(public), scheme="ecdsa-sha2-nistp256")
    try:
        Envelope.from_dict(envelope).verify([key], 1)
        return True
    except (VerificationError, ValueError, KeyError):
        return False


def variant(engine, base_ref, tmp_path, name, steps, files=(), user="ray"):
    """A deliberately misaligned image FROM the built one, built with the network off (its user: ``user``)."""
    context = tmp_path / name
    context.mkdir()
    for f in files:  # files, or folders
        if f.is_dir():
            import shutil
            shutil.copytree(f, context / f.name, symlinks=True)
        else:
            (context / f.name).write_bytes(f.read_bytes())
    (context / "Dockerfile").write_text(f"ARG PARENT\nFROM ${{PARENT}}\nUSER root\n{steps}\nUSER {user}\n")
    from imagekit import buildkit

    return buildkit.build(engine, context, tags=[f"imagekit-test/{name}:latest"], buildargs={"PARENT": base_ref},
                          labels={})

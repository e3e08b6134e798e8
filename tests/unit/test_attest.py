"""The attestation layouts read back from a real registry (docker-registry, no Docker engine) by
implementations that are not imagekit's: sigstore-js checks the bundle, securesystemslib the DSSE
envelope of the legacy .att layer; each refuses a tampered one and one signed by another key."""
import base64
import json

import pytest
from helpers import securesystemslib_verifies, seed_image, sigstore_js

from imagekit import attest
from imagekit.registry import Registry
from support import sign_pair
from imagekit import record

REPO = "mlops-desa/ray"


@pytest.fixture
def attached(registry_process, keys):
    """An image with an attestation written as verify-compat writes it; (registry, digest, envelope)."""
    reg = Registry(host=registry_process.host, scheme="http")
    digest = seed_image(reg, REPO, "v1", layers=1)
    envelope = sign_pair(keys["trusted"][0], {"ray": (REPO, digest)})
    record.write(reg, REPO, digest, envelope)
    return reg, digest, envelope


def stored(reg, digest):
    """What each layout holds for ``digest``: {"bundle": the bundle, "att": the envelope}."""
    found = {}
    for f in record.read(reg, REPO, digest):
        found[f.layout] = json.loads(reg.blob(REPO, f.layer["digest"]))
    return found


def tamper(envelope):
    data = json.loads(base64.b64decode(envelope["payload"]))
    data["predicate"]["passed"] = False
    return {**envelope, "payload": base64.b64encode(json.dumps(data).encode()).decode()}


def test_both_layouts_are_where_cosign_looks_and_other_implementations_verify_them(attached, keys, tmp_path):
    reg, digest, envelope = attached
    pub = keys["trusted"][1]
    bundle_ref, = reg.referrers(REPO, digest, attest.BUNDLE_TYPE)
    assert bundle_ref["annotations"] == {"dev.sigstore.bundle.content": "dsse-envelope",
                                         "dev.sigstore.bundle.predicateType": attest.PREDICATE_TYPE}
    manifest = reg.manifest(REPO, bundle_ref["digest"]).data
    assert manifest["artifactType"] == manifest["layers"][0]["mediaType"] == attest.BUNDLE_TYPE
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert manifest["subject"]["digest"] == digest
    att = reg.manifest(REPO, f"sha256-{digest[7:]}.att").data
    layer, = att["layers"]
    assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    assert layer["annotations"] == {"predicateType": attest.PREDICATE_TYPE, "dev.cosignproject.cosign/signature": ""}
    held = stored(reg, digest)
    assert held["bundle"]["verificationMaterial"]["publicKey"]["hint"] == attest.keyid(attest.load_public(str(pub)))
    assert held["bundle"]["dsseEnvelope"] == held["att"] == envelope
    checked = sigstore_js(held["bundle"], pub, digest, tmp_path)
    assert checked["ok"], checked
    assert checked["predicate"]["passed"] is True and checked["predicate"]["images"] == {"ray": digest}
    assert securesystemslib_verifies(held["att"], pub)


def test_a_second_attestation_is_appended_to_the_att_manifest_never_replacing_one(attached, keys):
    reg, digest, first = attached
    second = sign_pair(keys["other"][0], {"ray": (REPO, digest)})  # another signer's, cosign-style
    record.write(reg, REPO, digest, second)
    layers = reg.manifest(REPO, f"sha256-{digest[7:]}.att").data["layers"]
    assert [json.loads(reg.blob(REPO, d["digest"])) for d in layers] == [first, second]
    assert len(reg.referrers(REPO, digest, attest.BUNDLE_TYPE)) == 2
    record.write(reg, REPO, digest, second)  # the same again: nothing new
    assert len(reg.manifest(REPO, f"sha256-{digest[7:]}.att").data["layers"]) == 2


@pytest.mark.parametrize("forgery", ["tampered", "other key"])
def test_forged_attestations_fail_the_independent_verifiers_in_each_layout(registry_process, keys, tmp_path, forgery):
    reg = Registry(host=registry_process.host, scheme="http")
    digest = seed_image(reg, REPO, "v1", layers=1)
    key = keys["other"][0] if forgery == "other key" else keys["trusted"][0]
    envelope = sign_pair(key, {"ray": (REPO, digest)})
    record.write(reg, REPO, digest, tamper(envelope) if forgery == "tampered" else envelope)
    held, pub = stored(reg, digest), keys["trusted"][1]
    checked = sigstore_js(held["bundle"], pub, digest, tmp_path)
    assert not checked["ok"] and "signature verification failed" in checked["error"]
    assert not securesystemslib_verifies(held["att"], pub)
    (_, one), (_, other) = record.verdicts(reg, REPO, digest, attest.load_public(str(pub)))
    assert one.why == other.why and one.statement is None  # imagekit's gate says the same of both


def test_another_subject_fails_the_bundle_check(attached, keys, tmp_path):
    reg, digest, _ = attached
    checked = sigstore_js(stored(reg, digest)["bundle"], keys["trusted"][1], "sha256:" + "1" * 64, tmp_path)
    assert not checked["ok"] and "no subject is sha256:111" in checked["error"]


def test_envelopes_cross_between_imagekit_and_securesystemslib(keys):
    """Known answers both ways: securesystemslib's signer makes an envelope imagekit's check accepts,
    and imagekit's envelope verifies with securesystemslib (not only imagekit against itself)."""
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner

    key, pub = keys["trusted"]
    public = attest.load_public(str(pub))
    digest = "sha256:" + "2" * 64
    statement = json.loads(base64.b64decode(sign_pair(key, {"ray": (REPO, digest)})["payload"]))
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    signer = CryptoSigner(private)
    theirs = Envelope(json.dumps(statement).encode(), attest.PAYLOAD_TYPE, {})
    theirs.sign(signer)
    verdict = attest.check(theirs.to_dict(), digest, public)
    assert verdict.statement == statement, verdict.why
    assert securesystemslib_verifies(attest.sign(statement, attest.load_private(str(key))), pub)
    other = attest.check(theirs.to_dict(), digest, attest.load_public(str(keys["other"][1])))
    assert other.statement is None and "signed by another key" in other.why


def test_eight_concurrent_writers_lose_no_attestation_in_either_layout(registry_process, keys):
    """A registry without conditional writes (Debian's docker-registry: the fallback index and the .att
    tag are read, extended and written whole): when all eight writers have returned, all eight are there."""
    import threading

    from support import seed_image

    reg = Registry(registry_process.host, scheme="http")
    digest = seed_image(reg, REPO, "v1", layers=1)
    envelopes = [sign_pair(keys["trusted"][0], {"ray": (REPO, digest)}, scenarios=(f"run-{n}",)) for n in range(8)]
    errors = []

    def write(envelope):
        try:
            record.write(Registry(registry_process.host, scheme="http"), REPO, digest, envelope)
        except Exception as e:  # noqa: BLE001 - said by the assertion below
            errors.append(e)
    threads = [threading.Thread(target=write, args=(e,)) for e in envelopes]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert errors == []
    found = record.read(reg, REPO, digest)
    for layout in (record.BUNDLE, record.ATT):
        held = [f.envelope for f in found if f.layout == layout]
        assert len(held) == 8 and all(e in held for e in envelopes), layout

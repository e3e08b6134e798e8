import pytest

from imagekit.errors import UsageError
from imagekit.oci import Manifest, Reference, artifact

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("text, parts", [
    ("ray", ("", "ray", "", "")),
    ("ray:2.41.0-py311-sunat-v8", ("", "ray", "2.41.0-py311-sunat-v8", "")),
    (f"ray@{DIGEST}", ("", "ray", "", DIGEST)),
    ("127.0.0.1:5000/mlops-desa/ray:v1", ("127.0.0.1:5000", "mlops-desa/ray", "v1", "")),
    (f"harbor.example.org/mlops-prod/scipy-notebook@{DIGEST}", ("harbor.example.org", "mlops-prod/scipy-notebook", "", DIGEST)),
    ("localhost/x/y:z", ("localhost", "x/y", "z", "")),
    ("imagekit-build/ray:0123abcd", ("", "imagekit-build/ray", "0123abcd", "")),
])
def test_references_split_as_registries_do(text, parts):
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == parts
    assert str(ref) == text


def test_bad_references_are_usage_errors():
    with pytest.raises(UsageError, match="not a sha256 digest"):
        Reference.parse("ray@sha256:short")
    with pytest.raises(UsageError, match="names no repository"):
        Reference.parse(":v1")


def test_an_artifact_manifest_names_its_payload_by_digest():
    manifest = artifact("application/vnd.test+json", b'{"a": 1}', annotations={"k": "v"})
    assert manifest.data["config"]["size"] == 8 and manifest.config_digest.startswith("sha256:")
    assert Manifest.of(manifest.data) == manifest  # canonical bytes, same digest

"""The admission policies in docs/admission: parsed as YAML and checked against the controllers' own
schemas, and against what imagekit writes (its predicate type, the layouts, the verified set's
repositories). A misspelled field is refused, as the API server's strict field validation refuses it."""
import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from cloudcoil.models.kyverno.v1 import ClusterPolicy
from helpers import ROOT

from imagekit import attest, config

DOCS = ROOT / "docs" / "admission"


def load(name: str) -> dict:
    return yaml.safe_load((DOCS / name).read_text())


def dropped(given, kept, path=""):
    """The fields of ``given`` a model did not keep (unknown to the schema), or kept otherwise."""
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [path]
        return [p for k, v in given.items() for p in ([f"{path}.{k}"] if k not in kept else dropped(v, kept[k], f"{path}.{k}"))]
    if isinstance(given, list):
        if not isinstance(kept, list) or len(given) != len(kept):
            return [path]
        return [p for i, (a, b) in enumerate(zip(given, kept)) for p in dropped(a, b, f"{path}[{i}]")]
    return [] if given == kept else [f"{path} ({given!r} != {kept!r})"]


def kyverno_problems(doc: dict) -> list[str]:
    """Checked with Kyverno's CRD models (cloudcoil-models-kyverno 1.13.4: kyverno.io/v1 as Kyverno
    1.13 generates it): types and enums by the model, unknown fields by what it does not keep."""
    try:
        kept = ClusterPolicy.model_validate(doc).model_dump(by_alias=True, exclude_none=True, mode="json")
    except ValueError as e:
        return [str(e).splitlines()[0] + " " + " ".join(str(e).splitlines()[1:3])]
    return dropped(doc, kept)


def repositories() -> list[str]:
    cfg = config.load(ROOT / "imagekit.toml", env={})
    return sorted(cfg.image(n).repository for n in cfg.verify.verified_set)


def test_the_kyverno_policy_fits_kyvernos_schema_and_requires_imagekits_attestation_in_both_layouts():
    doc = load("kyverno-clusterpolicy.yaml")
    assert kyverno_problems(doc) == []
    checks = [v for rule in doc["spec"]["rules"] for v in rule["verifyImages"]]
    assert sorted(v["type"] for v in checks) == ["Cosign", "SigstoreBundle"]  # the .att tag, the bundle
    for v in checks:
        assert v["failureAction"] == "Enforce" and v["required"] and v["verifyDigest"]
        assert sorted(r.split("/")[-1].rstrip("*") for r in v["imageReferences"]) == repositories()
        (attestation,) = v["attestations"]
        assert attestation["type"] == attest.PREDICATE_TYPE
        (entry,) = attestation["attestors"][0]["entries"]
        assert entry["keys"]["rekor"] == {"ignoreTlog": True} and entry["keys"]["ctlog"] == {"ignoreSCT": True}
        conditions = attestation["conditions"][0]["all"]
        assert {"key": "{{ passed }}", "operator": "Equals", "value": True} in conditions
        assert {"key": "{{ image.digest }}", "operator": "AnyIn", "value": "{{ values(images) }}"} in conditions


@pytest.mark.parametrize("change, problem", [
    (lambda d: d["spec"]["rules"][0]["verifyImages"][0]["attestations"][0].update(atestors=[]), "atestors"),
    (lambda d: d["spec"]["rules"][1]["verifyImages"][0].update(type="Cosing"), "type"),
    (lambda d: d["spec"]["rules"][0]["verifyImages"][0]["attestations"][0]["attestors"][0]["entries"][0]["keys"]
     .update(rekor={"ignoreTLog": True}), "ignoreTLog"),
])
def test_a_misspelled_kyverno_field_is_refused(change, problem):
    doc = copy.deepcopy(load("kyverno-clusterpolicy.yaml"))
    change(doc)
    found = kyverno_problems(doc)
    assert found and problem in " ".join(found)


# policy.sigstore.dev/v1alpha1 ClusterImagePolicy: the fields this policy uses, with their types, as
# sigstore/policy-controller v0.15.1's config/300-clusterimagepolicy.yaml declares them (that CRD
# cannot be committed here); additionalProperties false stands for the API server's strict field
# validation of a structural schema.
def _obj(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


STR = {"type": "string"}
POLICY = _obj({"type": STR, "data": STR, "includeSpec": {"type": "boolean"}, "includeObjectMeta": {"type": "boolean"},
               "includeTypeMeta": {"type": "boolean"}, "fetchConfigFile": {"type": "boolean"}})
CIP = _obj({
    "apiVersion": {"const": "policy.sigstore.dev/v1alpha1"}, "kind": {"const": "ClusterImagePolicy"},
    "metadata": _obj({"name": STR, "annotations": {"type": "object"}}, ("name",)),
    "spec": _obj({
        "mode": {"enum": ["enforce", "warn"]},
        "images": {"type": "array", "items": _obj({"glob": STR}, ("glob",))},
        "authorities": {"type": "array", "items": _obj({
            "name": STR, "signatureFormat": {"enum": ["legacy", "bundle"]},
            "key": _obj({"data": STR, "kms": STR, "hashAlgorithm": STR}),
            "ctlog": _obj({"url": STR, "trustRootRef": STR}),
            "attestations": {"type": "array", "items": _obj({"name": STR, "predicateType": STR, "policy": POLICY},
                                                             ("name", "predicateType"))}})},
        "policy": POLICY}, ("images",))}, ("apiVersion", "kind", "metadata", "spec"))


def cip_problems(doc: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(CIP).iter_errors(doc)]


def test_the_policy_controller_policy_reads_the_att_layout_with_the_key_and_no_log():
    doc = load("policy-controller-clusterimagepolicy.yaml")
    assert cip_problems(doc) == []
    spec = doc["spec"]
    assert spec["mode"] == "enforce"
    assert sorted(i["glob"].split("/")[-1].rstrip("*") for i in spec["images"]) == repositories()
    (authority,) = spec["authorities"]
    assert "keyless" not in authority and "ctlog" not in authority  # no transparency log is consulted
    assert authority.get("signatureFormat", "legacy") == "legacy"  # bundles need keyless authorities there
    (attestation,) = authority["attestations"]
    assert attestation["predicateType"] == attest.PREDICATE_TYPE and attestation["policy"]["type"] == "cue"
    assert "predicate: passed: true" in attestation["policy"]["data"]


def test_a_misspelled_policy_controller_field_is_refused():
    doc = copy.deepcopy(load("policy-controller-clusterimagepolicy.yaml"))
    doc["spec"]["authorities"][0]["attestations"][0]["predicatetype"] = doc["spec"]["authorities"][0][
        "attestations"][0].pop("predicateType")
    assert any("predicatetype" in p for p in cip_problems(doc))


def test_the_docs_name_the_policies():
    text = (ROOT / "docs" / "attestations.md").read_text()
    for path in sorted(DOCS.iterdir()):
        assert f"admission/{path.name}" in text, path.name
    assert Path(DOCS / "kyverno-clusterpolicy.yaml").is_file()

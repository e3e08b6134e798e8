"""`imagekit manifests`: every rendered document validates against KubeRay's CRD schemas (v1.7.0,
with the API server's defaulting applied first) and the Zero to JupyterHub values schema; a
misspelled field is refused; the README's snippets are these documents."""
import copy
import re

import jsonschema
import pytest
import yaml
from helpers import ROOT

from imagekit import manifests

SCHEMAS = ROOT / "tests" / "schemas"
KUBERAY = yaml.safe_load((SCHEMAS / "kuberay-v1.7.0.yaml").read_text())
Z2JH = yaml.safe_load((SCHEMAS / "z2jh-4.4.0-values.yaml").read_text())
RAY_CLUSTER_CHART = yaml.safe_load((SCHEMAS / "ray-cluster-1.7.0-values.yaml").read_text())


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        schema = KUBERAY["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def defaulted(doc, schema: dict):
    """What the API server stores: every absent field with a default gets it, all the way down."""
    schema = _resolve(schema)
    for part in schema.get("allOf", []):
        defaulted(doc, part)
    if isinstance(doc, dict):
        for name, sub in schema.get("properties", {}).items():
            sub = _resolve(sub)
            if name not in doc and "default" in sub:
                doc[name] = copy.deepcopy(sub["default"])
            if name in doc:
                defaulted(doc[name], sub)
    elif isinstance(doc, list) and "items" in schema:
        for item in doc:
            defaulted(item, schema["items"])
    return doc


def strict(schema):
    """Strict field validation: an object that lists its properties refuses any other."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: (v if k == "default" else strict(v)) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def problems(doc: dict, *, apply_defaults: bool = True) -> list[str]:
    if doc.get("apiVersion") == manifests.API:
        schema = {"$defs": strict(KUBERAY["$defs"]), **strict(KUBERAY[doc["kind"]])}
        doc = defaulted(copy.deepcopy(doc), KUBERAY[doc["kind"]]) if apply_defaults else doc
    else:
        schema = RAY_CLUSTER_CHART if "singleuser" not in doc else Z2JH
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]


@pytest.fixture(scope="module")
def docs():
    return manifests.documents(manifests.EXAMPLE)


@pytest.mark.parametrize("name", manifests.FILES)
def test_every_rendered_document_validates(docs, name):
    assert problems(docs[name]) == []


def test_worker_groups_validate_because_of_the_defaults_the_api_server_applies(docs):
    cluster = copy.deepcopy(docs["raycluster.yaml"])
    for field in ("minReplicas", "maxReplicas"):
        del cluster["spec"]["workerGroupSpecs"][0][field]
    assert problems(cluster) == []
    assert any("'minReplicas' is a required property" in p for p in problems(cluster, apply_defaults=False))


@pytest.mark.parametrize("name, path, wrong", [
    ("raycluster.yaml", ("spec",), "gcsFaultToleranceOption"),
    ("raycluster.yaml", ("spec", "workerGroupSpecs", 0), "replica"),
    ("rayservice.yaml", ("spec",), "serveConfig"),
    ("rayjob-verify-stored.yaml", ("spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "containers", 0),
     "imagePullPolicyy"),
    ("jupyterhub-values.yaml", ("singleuser",), "profilelist"),
    ("jupyterhub-values.yaml", ("singleuser", "image"), "digest"),
    ("values-ray-cluster.yaml", ("image",), "digest"),  # the chart joins repository:tag and reads no digest
    ("values-ray-cluster.yaml", ("gcsFaultTolerance",), "redisAdress"),
    ("values-ray-cluster.yaml", ("worker",), "replica"),
])
def test_a_misspelled_field_is_refused(docs, name, path, wrong):
    doc = copy.deepcopy(docs[name])
    target = doc
    for step in path:
        target = target[step]
    target[wrong] = "x"
    found = problems(doc)
    assert found and f"'{wrong}' was unexpected" in found[0], found


def test_the_rendered_files_are_yaml_of_the_same_documents():
    for name, text in manifests.render(manifests.EXAMPLE).items():
        assert text.startswith("# imagekit manifests --env prod")
        assert yaml.safe_load(text) == manifests.documents(manifests.EXAMPLE)[name]
        assert "&id" not in text


def test_the_readme_snippets_are_the_rendered_documents():
    """Each README block after `<!-- imagekit manifests: FILE -->` is FILE rendered for EXAMPLE."""
    readme = (ROOT / "README.md").read_text()
    blocks = dict(re.findall(r"<!-- imagekit manifests: (\S+) -->\n```yaml\n(.*?)```", readme, re.S))
    rendered = manifests.render(manifests.EXAMPLE)
    assert set(blocks) == set(rendered)
    for name, text in rendered.items():
        assert blocks[name] == text, f"README's {name} differs from `imagekit manifests`; paste:\n{text}"


def test_the_ray_cluster_chart_values_pin_the_digest_in_the_tag(docs):
    from imagekit.oci import Reference

    image = docs["values-ray-cluster.yaml"]["image"]
    ref = Reference.parse(f"{image['repository']}:{image['tag'].replace('<digest>', 'a' * 64)}")  # the chart's join
    assert ref.digest == "sha256:" + "a" * 64 and ref.tag == "2.41.0-py311-sunat-v15"

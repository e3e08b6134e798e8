"""A GitOps folder's image references rewritten to an environment's digests, and nothing else."""
import pytest

from imagekit import gitops, inventory
from imagekit.errors import ConfigError

RAY = inventory.Held("harbor.example.org/mlops-prod/ray", "2.41.0-py311-sunat-v13", "sha256:" + "a" * 64)
NOTEBOOK = inventory.Held("harbor.example.org/mlops-prod/scipy-notebook", "python-3.11-sunat-v13", "sha256:" + "b" * 64)
WANTED = {"ray": RAY, "scipy-notebook": NOTEBOOK}
OLD = "sha256:" + "0" * 64

CLUSTER = f"""# the prod cluster: keep this comment
apiVersion: ray.io/v1
kind: RayCluster
metadata: {{name: mlops-prod}}
spec:
  headGroupSpec:
    template:
      spec:
        containers:
          - name: ray-head
            image: "harbor.example.org/mlops-test/ray@{OLD}"   # quoted, with a comment
          - name: sidecar
            image: redis:7.2
  workerGroupSpecs:
    - groupName: workers
      template:
        spec:
          containers: [{{name: ray-worker, image: 'ray:2.41.0-py311-sunat-v12'}}]
---
kind: ConfigMap
data: {{image: not-an-image}}
"""
KUSTOMIZATION = f"""resources: [cluster.yaml]
images:
  - name: ray
    newName: harbor.example.org/mlops-test/ray
    newTag: 2.41.0-py311-sunat-v12
  - name: scipy-notebook
    digest: {OLD}
  - name: redis
    newTag: "7.2"
"""
VALUES = f"""singleuser:
  image:
    name: harbor.example.org/mlops-test/scipy-notebook
    tag: python-3.11-sunat-v12@{OLD}
  profileList:
    - display_name: MLOps
      kubespawner_override: {{image: harbor.example.org/mlops-test/scipy-notebook@{OLD}}}
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "kustomization.yaml").write_text(KUSTOMIZATION)
    (tmp_path / "jupyterhub-values.yml").write_text(VALUES)
    (tmp_path / "README.md").write_text("image: ray:old (not YAML config)\n")
    return tmp_path


def test_every_reference_is_rewritten_and_nothing_else(folder):
    result = gitops.update(folder, WANTED, "prod")
    assert result.written and result.found == 6
    cluster = (folder / "base" / "cluster.yaml").read_text()
    assert cluster == (CLUSTER.replace(f'"harbor.example.org/mlops-test/ray@{OLD}"', f'"{RAY.ref}"')
                       .replace("'ray:2.41.0-py311-sunat-v12'", f"'{RAY.ref}'"))
    assert (folder / "kustomization.yaml").read_text() == (
        KUSTOMIZATION.replace("newName: harbor.example.org/mlops-test/ray", f"newName: {RAY.repository}")
        .replace("newTag: 2.41.0-py311-sunat-v12", f"digest: {RAY.digest}").replace(OLD, NOTEBOOK.digest))
    assert (folder / "jupyterhub-values.yml").read_text() == (
        VALUES.replace(f"tag: python-3.11-sunat-v12@{OLD}", f"tag: {NOTEBOOK.tag}@{NOTEBOOK.digest}")
        .replace(f"harbor.example.org/mlops-test/scipy-notebook@{OLD}", NOTEBOOK.ref)
        .replace("name: harbor.example.org/mlops-test/scipy-notebook", f"name: {NOTEBOOK.repository}"))
    assert (folder / "README.md").read_text() == "image: ray:old (not YAML config)\n"
    assert {(c.file, c.line) for c in result.changes} >= {("base/cluster.yaml", 11), ("kustomization.yaml", 5)}
    assert f"+            image: \"{RAY.ref}\"   # quoted, with a comment" in result.diff


def test_a_second_run_changes_nothing(folder):
    gitops.update(folder, WANTED, "prod")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    again = gitops.update(folder, WANTED, "prod")
    assert not again.written and again.changes == [] and again.diff == "" and again.found == 6
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_a_kustomize_entry_with_neither_tag_nor_digest_gets_the_digest(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("images:\n  - name: ray\n    newName: old/ray\n")
    gitops.update(tmp_path, WANTED, "prod")
    assert (tmp_path / "kustomization.yaml").read_text() == (
        f"images:\n  - name: ray\n    digest: {RAY.digest}\n    newName: {RAY.repository}\n")


def test_a_file_that_is_not_yaml_stops_it_and_writes_nothing(folder):
    (folder / "templates.yaml").write_text("image: {{ .Values.image }\n  - x: [\n")
    before = (folder / "base" / "cluster.yaml").read_text()
    with pytest.raises(ConfigError, match="templates.yaml is not YAML"):
        gitops.update(folder, WANTED, "prod")
    assert (folder / "base" / "cluster.yaml").read_text() == before


def test_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder"):
        gitops.plan(tmp_path / "nope", WANTED, "prod")


def test_a_flow_style_kustomize_entry_gets_the_digest_in_its_braces(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("images: [{name: scipy-notebook}]\n")
    gitops.update(tmp_path, WANTED, "prod")
    assert (tmp_path / "kustomization.yaml").read_text() == f"images: [{{name: scipy-notebook, digest: {NOTEBOOK.digest}}}]\n"


RAY_CLUSTER = """# KubeRay's ray-cluster chart: values for prod
image:
  repository: harbor.example.org/mlops-prod/ray  # the platform's Ray image
  tag: 2.41.0-py311-sunat-v14
  pullPolicy: IfNotPresent
head:
  rayStartParams: {dashboard-host: '0.0.0.0'}
worker:
  groupName: workers
  image: {repository: "harbor.example.org/mlops-test/ray", tag: "my-own-build", pullPolicy: Always}
redis:
  image:
    registry: docker.io
    repository: bitnami/redis
    tag: 7.4.1
"""
BITNAMI = f"""image:
  registry: harbor.example.org
  repository: mlops-test/ray
  tag: 2.41.0-py311-sunat-v12
  digest: "{OLD}"
sidecar:
  image:
    repository: harbor.example.org/mlops-prod/ray
"""


def test_helm_values_repository_and_tag_are_pinned_byte_for_byte_but_the_tag(tmp_path):
    (tmp_path / "values-ray-cluster.yaml").write_text(RAY_CLUSTER)
    result = gitops.update(tmp_path, WANTED, "prod")
    pinned = f"{RAY.tag}@{RAY.digest}"
    assert (tmp_path / "values-ray-cluster.yaml").read_text() == (
        RAY_CLUSTER.replace("tag: 2.41.0-py311-sunat-v14", f"tag: {pinned}")
        .replace('{repository: "harbor.example.org/mlops-test/ray", tag: "my-own-build"',
                 f'{{repository: "{RAY.repository}", tag: "{pinned}"'))
    assert result.found == 2  # the top-level image and the worker group's own; bitnami/redis is not ours
    assert [(c.line, c.old, c.new) for c in result.changes] == [
        (4, "2.41.0-py311-sunat-v14", pinned),  # another release of prod's image: named, line by line
        (10, "harbor.example.org/mlops-test/ray", RAY.repository),
        (10, "my-own-build", pinned)]  # a tag naming no release imagekit knows: reported, never skipped
    from imagekit.oci import Reference  # what the chart's template joins is a digest reference
    assert Reference.parse(f"{RAY.repository}:{pinned}").digest == RAY.digest


def test_helm_values_with_a_registry_key_or_a_digest_key_or_no_tag(tmp_path):
    (tmp_path / "values.yaml").write_text(BITNAMI)
    gitops.update(tmp_path, WANTED, "prod")
    assert (tmp_path / "values.yaml").read_text() == (
        BITNAMI.replace("repository: mlops-test/ray", "repository: mlops-prod/ray")
        .replace(f'digest: "{OLD}"', f'digest: "{RAY.digest}"')
        .replace("    repository: harbor.example.org/mlops-prod/ray\n",
                 f"    repository: harbor.example.org/mlops-prod/ray\n    tag: {RAY.tag}@{RAY.digest}\n"))
    assert gitops.plan(tmp_path, WANTED, "prod")[0].changes == []  # checked: now what prod runs

"""Promotion desa -> test -> prod on a real registry with TLS from a test CA and authentication on."""
import hashlib
import json

import pytest
from helpers import ROOT, RegistryProcess, make_htpasswd, make_tls, seed_image

from support import record_verified

from imagekit import attest, config, history, promote, record
from imagekit.errors import CheckFailed, PreconditionError, RegistryError, UsageError
from imagekit.push import PushedImage
from imagekit.registry import Manifest, Registry, copy_blobs
from imagekit.verify.policy import required_scenarios

ROBOT, SECRET = "robot$mlops+promote", "int3gration-Pa55w0rd"  # no other test's
SCENARIOS = tuple(name for name, _ in required_scenarios(config.load(ROOT / "imagekit.toml", env={})))  # the gate's


@pytest.fixture(scope="module")
def secure(tmp_path_factory, keys):
    """A registry with TLS (test CA) and htpasswd auth; config pointing at it as a robot account."""
    root = tmp_path_factory.mktemp("secure")
    ca, cert, key = make_tls(root / "tls")
    reg = RegistryProcess(root / "registry", tls=(cert, key), htpasswd=make_htpasswd(root / "htpasswd", ROBOT, SECRET))
    reg.start()
    env = {"IMAGEKIT_REGISTRY_URL": f"https://{reg.host}", "IMAGEKIT_REGISTRY_CA_BUNDLE": str(ca),
           "IMAGEKIT_REGISTRY_USERNAME": ROBOT, "IMAGEKIT_REGISTRY_PASSWORD": SECRET,
           "IMAGEKIT_TRUST_PUBLIC_KEY": str(keys["trusted"][1])}
    yield reg, env
    reg.stop()


@pytest.fixture(scope="module")
def in_desa(cfg, built, registry, in_registry, secure, keys):
    """Both images in desa through TLS and auth, copied blob for blob from the session registry's desa (a
    promotion across registries does the same; pushing through the engine is test_build_push's), and the
    pair's verification attested as verify-compat attests it."""
    _, env = secure
    scfg = config.load(cfg.source, env=env)
    src, dst, result = Registry(host=registry.host, scheme="http"), Registry.from_config(scfg), {}
    for img in (built.image(n) for n in ("base", "ray", "notebook")):
        repo = f"mlops-desa/{img.repository}"
        manifest = src.manifest(repo, img.tags[0])
        copy_blobs(src, repo, dst, repo, manifest, lambda line: None)
        for tag in img.tags:
            dst.put_manifest(repo, tag, manifest)
        result[img.name] = PushedImage(img.name, f"{dst.host}/{repo}", img.tags, manifest.digest)
    record_verified(dst, keys["trusted"][0],
                    {n: (result[n].repository.split("/", 1)[1], result[n].digest) for n in ("notebook", "ray")},
                    scenarios=SCENARIOS)
    return scfg, env, result


@pytest.fixture
def pushed(in_desa, tmp_path, request):
    """desa as pushed, and test and prod projects of this test's own: tests do not see each other's promotions."""
    scfg, env, result = in_desa
    own = "t" + hashlib.sha256(request.node.name.encode()).hexdigest()[:10]
    text = open(scfg.source).read().replace('"mlops-test"', f'"{own}-test"').replace('"mlops-prod"', f'"{own}-prod"')
    (tmp_path / "imagekit.toml").write_text(text)
    tcfg = config.load(tmp_path / "imagekit.toml", env=env)
    return tcfg, Registry.from_config(tcfg), result


def project(cfg, env):
    return cfg.environment(env).project


def test_credentials_and_ca_are_required(pushed, secure):
    scfg, reg, _ = pushed
    _, env = secure
    wrong = config.load(scfg.source, env={**env, "IMAGEKIT_REGISTRY_PASSWORD": "nope"})
    with pytest.raises(RegistryError, match="refused the credentials"):
        Registry.from_config(wrong).tags("mlops-desa/ray")
    no_ca = config.load(scfg.source, env={k: v for k, v in env.items() if k != "IMAGEKIT_REGISTRY_CA_BUNDLE"})
    with pytest.raises(RegistryError, match="TLS to .* failed"):
        Registry.from_config(no_ca).tags("mlops-desa/ray")


def test_an_unverified_digest_is_not_promoted(pushed):
    scfg, reg, result = pushed
    with pytest.raises(CheckFailed) as e:
        promote.promote(scfg, ["base"], to="test")
    assert "is not in verify.images" in str(e.value) and f"mlops-desa/mlops-base@{result['base'].digest}" in str(e.value)
    with pytest.raises(CheckFailed, match="would run in test next to notebook@\\(nothing yet\\)"):
        promote.promote(scfg, ["ray"], to="test")  # verified, but not alone
    assert reg.tags(f"{project(scfg, 'test')}/mlops-base") == []


def test_skipping_an_environment_is_refused_unless_forced(pushed):
    scfg, reg, _ = pushed
    with pytest.raises(UsageError, match="desa -> prod skips test"):
        promote.promote(scfg, ["ray"], to="prod", from_env="desa")
    assert reg.tags(f"{project(scfg, 'prod')}/ray") == []


def test_promotion_moves_the_same_digest_by_mount_through_every_environment(pushed):
    scfg, reg, result = pushed
    trusted = attest.trusted_key(scfg)
    for env in ("test", "prod"):
        done = {p.image: p for p in promote.promote(scfg, [], all_images=True, to=env)}
        for name, repo in (("ray", "ray"), ("notebook", "scipy-notebook")):
            p = done[name]
            assert p.digest == result[name].digest and p.copied == 0 and p.mounted > 0
            for tag in (result[name].tags[0], "current"):
                assert reg.manifest(f"{project(scfg, env)}/{repo}", tag).digest == result[name].digest
            verdicts = record.verdicts(reg, f"{project(scfg, env)}/{repo}", p.digest, trusted)  # they travel along
            pair = {n: result[n].digest for n in ("ray", "notebook")}
            assert {f.layout for f, v in verdicts if v.images == pair} == {record.BUNDLE, record.ATT}  # both layouts
    again = promote.promote(scfg, ["ray"], to="prod")[0]
    assert again.already and again.mounted == again.copied == 0
    assert [e.digest for e in history.history(scfg, "ray", "prod")] == [result["ray"].digest]


def put_variant(reg, key, repo, source_manifest, tag, note, partner):
    """The same blobs under a manifest with another digest (an annotation differs), verified with
    ``partner`` (name -> (repo, digest))."""
    body = json.loads(source_manifest.body)
    body.setdefault("annotations", {})["org.imagekit.test"] = note
    raw = json.dumps(body).encode()
    variant = Manifest("sha256:" + hashlib.sha256(raw).hexdigest(), source_manifest.media_type, raw)
    reg.put_manifest(repo, tag, variant)
    record_verified(reg, key, {"ray": (repo, variant.digest), **partner}, scenarios=SCENARIOS)
    return variant.digest


def test_prod_never_moves_a_version_tag_and_rollback_restores_the_previous_digest(pushed, keys, secure, cli,
                                                                                monkeypatch, tmp_path):
    """... and with --manifests the rollback moves prod's GitOps folder back too."""
    scfg, reg, result = pushed
    test, prod = project(scfg, "test"), project(scfg, "prod")
    for env in ("test", "prod"):  # what this test starts from: the pair promoted up to prod
        promote.promote(scfg, [], all_images=True, to=env)
    key, partner = keys["trusted"][0], {"notebook": ("mlops-desa/scipy-notebook", result["notebook"].digest)}
    version = result["ray"].tags[0]
    original = reg.manifest(f"{test}/ray", version)
    other = put_variant(reg, key, f"{test}/ray", original, version, "rebuilt", partner)  # test is mutable
    with pytest.raises(CheckFailed, match=f"{prod}/ray:{version} is immutable in prod"):
        promote.promote(scfg, ["ray"], to="prod")
    assert reg.manifest(f"{prod}/ray", version).digest == original.digest
    newer = put_variant(reg, key, f"{test}/ray", original, "v-next", "next release", partner)
    promote.promote(scfg, ["ray:v-next"], to="prod")
    assert reg.manifest(f"{prod}/ray", "current").digest == newer != other
    for name, value in secure[1].items():
        monkeypatch.setenv(name, value)
    (tmp_path / "gitops").mkdir()
    (tmp_path / "gitops" / "head.yaml").write_text(f"containers:\n  - {{name: ray-head, image: {prod}/ray@{newer}}}\n")
    code, out, _ = cli("--config", str(scfg.source), "rollback", "ray", "--env", "prod", "--manifests",
                       str(tmp_path / "gitops"), "--json")
    assert code == 0, out
    [back] = json.loads(out)["result"]["rollback"]
    assert back["digest"] == original.digest == reg.manifest(f"{prod}/ray", "current").digest
    assert (tmp_path / "gitops" / "head.yaml").read_text() == (
        f"containers:\n  - {{name: ray-head, image: {reg.host}/{prod}/ray@{original.digest}}}\n")
    assert [(e.kind, e.digest) for e in history.history(scfg, "ray", "prod")] == [
        ("promote", original.digest), ("promote", newer), ("rollback", original.digest)]
    with pytest.raises(PreconditionError, match="nothing to roll back to"):
        history.rollback(scfg, ["ray"], "prod")


SMALL = """
[[environments]]
name = "desa"
project = "mlops-desa"
[[environments]]
name = "prod"
project = "mlops-prod"
{prod_registry}
[verify]
images = ["ray"]
[[images]]
name = "ray"
tags = ["v1"]
"""


def small_project(tmp_path, keys, registry, prod_registry=""):
    (tmp_path / "imagekit.toml").write_text(SMALL.format(prod_registry=prod_registry))
    return config.load(tmp_path / "imagekit.toml", env={"IMAGEKIT_REGISTRY_URL": registry,
                                                         "IMAGEKIT_TRUST_PUBLIC_KEY": str(keys["trusted"][1])})


def test_a_promotion_stopped_midway_leaves_no_tag_and_completes_when_run_again(tmp_path, registry_process, keys):
    cfg = small_project(tmp_path, keys, registry_process.host)
    reg = Registry.from_config(cfg)
    digest = seed_image(reg, "mlops-desa/ray", "v1", layers=6, verified=keys["trusted"][0])

    def stop_midway(line):
        if line.startswith("mounted") and registry_process.proc:
            registry_process.stop()

    with pytest.raises(RegistryError):
        promote.promote(cfg, ["ray:v1"], to="prod", on_line=stop_midway)
    registry_process.start()
    assert reg.tags("mlops-prod/ray") == []  # the manifest is written last: no tag names missing blobs
    done = promote.promote(cfg, ["ray:v1"], to="prod")[0]
    assert done.digest == digest and reg.manifest("mlops-prod/ray", "v1").digest == digest
    assert done.present >= 1  # what the first run mounted stays


def test_across_registries_the_blobs_are_streamed(tmp_path, registry_process, keys):
    other = RegistryProcess(tmp_path / "other").start()
    try:
        cfg = small_project(tmp_path, keys, registry_process.host, f'registry = "{other.host}"')
        digest = seed_image(Registry.from_config(cfg), "mlops-desa/ray", "v1", layers=3, verified=keys["trusted"][0])
        done = promote.promote(cfg, ["ray:v1"], to="prod")[0]
        assert (done.copied, done.mounted) == (7, 0)  # config + 3 layers + the bundle's config and blob + the .att layer
        assert Registry(host=other.host, scheme="http").manifest("mlops-prod/ray", "v1").digest == digest
    finally:
        other.stop()


def gitops_folder(root, old):
    """An environment's folder of a GitOps repository, naming other digests than the environment's."""
    root.mkdir()
    (root / "kustomization.yaml").write_text(
        f"# prod overlay\nresources: [raycluster.yaml]\nimages:\n  - name: ray\n    digest: {old}  # moved by CI\n")
    (root / "jupyterhub-values.yaml").write_text(
        f"singleuser:\n  image:\n    name: harbor.example.org/mlops/scipy-notebook\n    tag: \"old@{old}\"\n")
    (root / "values-ray-cluster.yaml").write_text(  # KubeRay's ray-cluster chart, another release of the image
        "image:\n  repository: harbor.example.org/mlops/ray  # the platform's\n  tag: 2.41.0-py311-sunat-v14\n"
        "  pullPolicy: IfNotPresent\nhead:\n  rayStartParams: {dashboard-host: '0.0.0.0'}\n")
    return {p.name: p.read_text() for p in root.iterdir()}


def test_manifests_follow_a_promotion_and_a_refused_one_leaves_them_untouched(pushed, secure, cli, monkeypatch,
                                                                              tmp_path):
    """promote --manifests rewrites the folder to the promoted digests and prints the diff; a refused
    promotion writes nothing; --check exits 1 on a stale digest; the rendered manifests are pinned by
    `current`."""
    tcfg, reg, result = pushed
    for name, value in secure[1].items():
        monkeypatch.setenv(name, value)
    folder, old = tmp_path / "gitops-test", "sha256:" + "0" * 64
    before = gitops_folder(folder, old)
    base = ("--config", str(tcfg.source))

    code, out, _ = cli(*base, "manifests", "--env", "test", "--check", str(folder), "--json")
    assert code == 2 and "test runs none of the verified images yet" in json.loads(out)["error"]["message"]
    code, out, _ = cli(*base, "promote", "--all", "--to", "prod", "--manifests", str(folder), "--json")
    assert code != 0 and json.loads(out)["ok"] is False  # desa -> prod skips test: refused
    assert {p.name: p.read_text() for p in folder.iterdir()} == before

    code, out, _ = cli(*base, "promote", "--all", "--to", "test", "--manifests", str(folder), "--json")
    assert code == 0, out
    update = json.loads(out)["result"]["manifests"]
    assert sorted(p["image"] for p in json.loads(out)["result"]["promotions"]) == ["notebook", "ray"]
    ray, notebook = result["ray"].digest, result["notebook"].digest
    version = tcfg.project.version
    assert {(c["file"], c["new"]) for c in update["changes"]} == {
        ("kustomization.yaml", ray), ("jupyterhub-values.yaml", f"{reg.host}/{project(tcfg, 'test')}/scipy-notebook"),
        ("jupyterhub-values.yaml", f"python-3.11-sunat-v{version}@{notebook}"),
        ("values-ray-cluster.yaml", f"{reg.host}/{project(tcfg, 'test')}/ray"),
        ("values-ray-cluster.yaml", f"2.41.0-py311-sunat-v{version}@{ray}")}
    assert (folder / "values-ray-cluster.yaml").read_text() == before["values-ray-cluster.yaml"].replace(
        "harbor.example.org/mlops/ray", f"{reg.host}/{project(tcfg, 'test')}/ray").replace(
        "2.41.0-py311-sunat-v14", f"2.41.0-py311-sunat-v{version}@{ray}")  # byte for byte but the image
    assert f"-    digest: {old}  # moved by CI\n+    digest: {ray}  # moved by CI" in update["diff"]
    assert (folder / "kustomization.yaml").read_text() == before["kustomization.yaml"].replace(old, ray)

    code, out, _ = cli(*base, "manifests", "--env", "test", "--check", str(folder))
    assert code == 0 and "3 references, all test's `current`" in out
    code, out, _ = cli(*base, "promote", "--all", "--to", "test", "--manifests", str(folder), "--json")
    assert code == 0 and json.loads(out)["result"]["manifests"]["changes"] == []  # idempotent
    (folder / "kustomization.yaml").write_text(before["kustomization.yaml"])
    code, out, _ = cli(*base, "manifests", "--env", "test", "--check", str(folder))
    assert code == 1 and f"kustomization.yaml:5: {old} (runs: {ray})" in out

    code, out, _ = cli(*base, "manifests", "--env", "test", "--out", str(tmp_path / "rendered"), "--json")
    assert code == 0, out
    pinned = json.loads(out)["result"]["pinned"]
    assert pinned["ray"] == f"{reg.host}/{project(tcfg, 'test')}/ray@{ray}" and pinned["ray_version"] == "2.41.0"
    assert pinned["ray_id"] == reg.manifest(f"{project(tcfg, 'test')}/ray", ray).data["config"]["digest"]
    cluster = (tmp_path / "rendered" / "raycluster.yaml").read_text()
    assert f"image: {pinned['ray']}" in cluster and "rayVersion: 2.41.0" in cluster
    chart = (tmp_path / "rendered" / "values-ray-cluster.yaml").read_text()  # KubeRay's Helm chart, pinned too
    assert f"tag: 2.41.0-py311-sunat-v{version}@{ray}" in chart

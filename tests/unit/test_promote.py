"""The promotion gate against a registry process on loopback (no Docker): records as verify-compat
writes them, and every refusal leaves the target untouched."""
import json
import os
import tracemalloc

import pytest
from helpers import RegistryProcess, make_htpasswd, seed_image

from imagekit import config, promote
from imagekit.errors import CheckFailed, ConfigError, PreconditionError, RegistryError, UsageError
from imagekit.registry import Registry
from imagekit.verify import record

GATE = """
[[environments]]
name = "desa"
project = "mlops-desa"
[[environments]]
name = "test"
project = "mlops-test"
[[environments]]
name = "prod"
project = "mlops-prod"
[[images]]
name = "ray"
tags = ["v1"]
[[images]]
name = "notebook"
repository = "scipy-notebook"
tags = ["v1"]
"""
REPOS = {"ray": "ray", "notebook": "scipy-notebook"}


@pytest.fixture
def desa(tmp_path, registry_process):
    """ray and notebook images in desa (v1), made by hand; returns (config, registry, digests)."""
    (tmp_path / "imagekit.toml").write_text(GATE)
    cfg = config.load(tmp_path / "imagekit.toml", env={"IMAGEKIT_REGISTRY_URL": registry_process.host})
    reg = Registry.from_config(cfg)
    digests = {n: seed_image(reg, f"mlops-desa/{repo}", "v1", layers=2) for n, repo in REPOS.items()}
    return cfg, reg, digests


def verify(reg, digests, *, passed=True, pair=None, only=None):
    """Records as verify-compat writes them, for the pair ``pair`` (default: these digests)."""
    pair = pair or digests
    data = record.payload(passed=passed, lock="0" * 64, python="3.11.2", s3_server="test",
                          subjects={n: (f"mlops-desa/{REPOS[n]}", pair[n]) for n in REPOS},
                          scenarios={"iris": {"max_probability_diff": 0.0}})
    for name in only or REPOS:
        record.write(reg, f"mlops-desa/{REPOS[name]}", digests[name], data)


def untouched(reg, env="test"):
    return all(reg.tags(f"mlops-{env}/{repo}") == [] for repo in REPOS.values())


def test_a_verified_pair_is_promoted_with_its_record(desa):
    cfg, reg, digests = desa
    verify(reg, digests)
    done = {p.image: p for p in promote.promote(cfg, [], all_images=True, to="test")}
    for name, repo in REPOS.items():
        assert done[name].digest == digests[name] and done[name].tags == ["v1", "current"]
        assert reg.manifest(f"mlops-test/{repo}", "current").digest == digests[name]
        assert record.read(reg, f"mlops-test/{repo}", digests[name])["ray"]["digest"] == digests["ray"]
    assert [e.digest for e in promote.history(cfg, "ray", "test")] == [digests["ray"]]


@pytest.mark.parametrize("case, why", [
    ("failed", "has a verification record that did not pass"),
    ("another pair", "has a verification record about another pair"),
    ("none", "has no verification record"),
])
def test_a_digest_without_a_passing_record_of_its_own_is_refused(desa, case, why):
    cfg, reg, digests = desa
    if case == "failed":
        verify(reg, digests, passed=False)
    elif case == "another pair":  # a real record, copied from another pair's digests
        verify(reg, digests, pair={n: "sha256:" + "1" * 64 for n in REPOS})
    with pytest.raises(CheckFailed, match=why) as e:
        promote.promote(cfg, ["ray"], to="test")
    assert "imagekit verify-compat" in str(e.value) and e.value.exit_code == 1
    assert untouched(reg)


def test_a_mixed_batch_writes_nothing(desa):
    cfg, reg, digests = desa
    verify(reg, digests, only=["ray"])  # the notebook has no record
    with pytest.raises(CheckFailed, match="scipy-notebook@.* has no verification record"):
        promote.promote(cfg, [], all_images=True, to="test")
    assert untouched(reg)  # not even the verified ray


def test_skipping_an_environment_needs_force(desa):
    cfg, reg, digests = desa
    verify(reg, digests)
    with pytest.raises(UsageError, match="desa -> prod skips test"):
        promote.promote(cfg, ["ray"], to="prod", from_env="desa")
    assert untouched(reg, "prod")
    assert promote.promote(cfg, ["ray"], to="prod", from_env="desa", force=True)[0].digest == digests["ray"]


def test_image_at_digest_promotes_that_digest_under_current_only(desa):
    cfg, reg, digests = desa
    verify(reg, digests)
    done = promote.promote(cfg, [f"ray@{digests['ray']}"], to="test")[0]
    assert done.tags == ["current"] and reg.tags("mlops-test/ray") == sorted(["current", record.tag_for(digests["ray"]),
                                                                               promote.HISTORY_TAG])


def test_promote_history_and_rollback_through_the_cli_print_json_data(desa, cli, monkeypatch, registry_process):
    cfg, reg, digests = desa
    verify(reg, digests)
    monkeypatch.setenv("IMAGEKIT_REGISTRY_URL", registry_process.host)
    code, out, err = cli("--config", cfg.source, "promote", "--all", "--to", "test", "--json")
    assert code == 0, err
    promoted = json.loads(out)["result"]
    assert code == 0 and {p["image"]: p["digest"] for p in promoted} == digests
    assert all(isinstance(p["tags"], list) and p["kind"] == "promote" for p in promoted)
    second = seed_image(reg, "mlops-desa/ray", "v2", layers=1)
    verify(reg, {**digests, "ray": second}, only=["ray"])
    assert cli("--config", cfg.source, "promote", "ray:v2", "--to", "test")[0] == 0
    code, out, _ = cli("--config", cfg.source, "history", "ray", "--env", "test", "--json")
    assert code == 0 and [(e["kind"], e["digest"], e["tags"]) for e in json.loads(out)["result"]] == [
        ("promote", digests["ray"], ["v1", "current"]), ("promote", second, ["v2", "current"])]
    code, out, _ = cli("--config", cfg.source, "rollback", "ray", "--env", "test", "--json")
    assert code == 0 and json.loads(out)["result"]["digest"] == digests["ray"] == reg.manifest("mlops-test/ray",
                                                                                              "current").digest
    code, _, err = cli("--config", cfg.source, "rollback", "ray", "--env", "test")
    assert code == 2 and "nothing to roll back to" in err


TWO_REGISTRIES = """
[[environments]]
name = "desa"
project = "mlops-desa"
[[environments]]
name = "prod"
project = "mlops-prod"
registry = "{prod}"
[verify]
images = ["ray"]
[[images]]
name = "ray"
tags = ["v1"]
"""


@pytest.fixture
def two_registries(tmp_path):
    """desa and prod on registries of their own, each with a robot account of its own."""
    regs = {}
    for env, user in (("desa", "robot$desa+ci"), ("prod", "robot$prod+ci")):
        regs[env] = RegistryProcess(tmp_path / env, htpasswd=make_htpasswd(tmp_path / f"{env}.htpasswd", user,
                                                                           f"{env}-secret")).start()
    (tmp_path / "imagekit.toml").write_text(TWO_REGISTRIES.format(prod=regs["prod"].host))
    yield tmp_path / "imagekit.toml", regs
    for reg in regs.values():
        reg.stop()


DESA = {"IMAGEKIT_REGISTRY_USERNAME": "robot$desa+ci", "IMAGEKIT_REGISTRY_PASSWORD": "desa-secret"}


def test_each_environment_uses_its_own_credentials(two_registries):
    path, regs = two_registries
    env = {"IMAGEKIT_REGISTRY_URL": regs["desa"].host, **DESA}
    cfg = config.load(path, env=env)
    digest = seed_image(Registry.from_config(cfg, cfg.environment("desa")), "mlops-desa/ray", "v1", layers=2,
                        verified=True)
    with pytest.raises(RegistryError, match="refused the credentials") as e:  # desa's robot cannot write prod
        promote.promote(cfg, ["ray:v1"], to="prod")
    assert "IMAGEKIT_ENV_<NAME>_USERNAME" in str(e.value)
    cfg = config.load(path, env={**env, "IMAGEKIT_ENV_PROD_USERNAME": "robot$prod+ci",
                                 "IMAGEKIT_ENV_PROD_PASSWORD": "prod-secret"})
    assert not cfg.warnings  # the environment's own variables are known ones
    assert promote.promote(cfg, ["ray:v1"], to="prod")[0].digest == digest


def test_a_large_layer_crosses_registries_in_constant_memory(tmp_path, registry_process):
    other = RegistryProcess(tmp_path / "other").start()
    try:
        (tmp_path / "imagekit.toml").write_text(TWO_REGISTRIES.format(prod=other.host))
        cfg = config.load(tmp_path / "imagekit.toml", env={"IMAGEKIT_REGISTRY_URL": registry_process.host})
        reg = Registry.from_config(cfg)
        layer = os.urandom(96 << 20)
        digest = seed_image(reg, "mlops-desa/ray", "v1", layers=0, verified=True, extra=layer)
        del layer
        tracemalloc.start()
        done = promote.promote(cfg, ["ray:v1"], to="prod")[0]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert done.digest == digest and done.copied >= 2
        assert peak < 24 << 20, f"peak {peak / 1e6:.0f} MB for a 100 MB layer"  # a quarter of the layer
    finally:
        other.stop()


def test_history_of_a_repository_that_does_not_exist_says_so(desa):
    cfg, reg, digests = desa
    with pytest.raises(PreconditionError, match="mlops-test/ray does not exist"):
        promote.history(cfg, "ray", "test")


BATCH = GATE + """
[[images]]
name = "batch"
tags = ["v1"]
"""


def test_an_image_outside_the_verified_set_is_named_and_left_out(desa, tmp_path, registry_process):
    _, reg, digests = desa
    (tmp_path / "imagekit.toml").write_text(BATCH)
    cfg = config.load(tmp_path / "imagekit.toml", env={"IMAGEKIT_REGISTRY_URL": registry_process.host})
    batch = seed_image(reg, "mlops-desa/batch", "v1", layers=1, verified=True)
    verify(reg, digests)
    lines = []
    done = promote.promote(cfg, [], all_images=True, to="test", on_line=lines.append)
    assert {p.image for p in done} == {"ray", "notebook"}  # the verified set, as one step
    assert "batch: not promoted: it is not in verify.images, so no verification covers it" in lines
    with pytest.raises(CheckFailed, match="batch@.* is not in verify.images"):
        promote.promote(cfg, ["batch"], to="test")
    assert reg.tags("mlops-test/batch") == []
    with_batch = config.load(tmp_path / "imagekit.toml", env={"IMAGEKIT_REGISTRY_URL": registry_process.host,
                                                              "IMAGEKIT_VERIFY_IMAGES": "notebook,ray,batch"})
    data = record.payload(passed=True, lock="0" * 64, python="3.11.2", s3_server="test", scenarios={},
                          subjects={**{n: (f"mlops-desa/{REPOS[n]}", d) for n, d in digests.items()},
                                    "batch": ("mlops-desa/batch", batch)})
    for repo, digest in [*((f"mlops-desa/{REPOS[n]}", d) for n, d in digests.items()), ("mlops-desa/batch", batch)]:
        record.write(reg, repo, digest, data)
    assert {p.image for p in promote.promote(with_batch, [], all_images=True, to="test")} == {"ray", "notebook", "batch"}
    with pytest.raises(ConfigError, match="'spark' is not an image of this project"):
        promote.promote(config.load(tmp_path / "imagekit.toml", env={"IMAGEKIT_VERIFY_IMAGES": "ray,spark"}), [],
                        all_images=True, to="test")

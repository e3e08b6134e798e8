"""The promotion gate against a registry process on loopback (no Docker): records as verify-compat
writes them, and every refusal leaves the target untouched."""
import json

import pytest
from helpers import seed_image

from imagekit import config, promote
from imagekit.errors import CheckFailed, UsageError
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
    promoted = json.loads(out)
    assert code == 0 and {p["image"]: p["digest"] for p in promoted} == digests
    assert all(isinstance(p["tags"], list) and p["kind"] == "promote" for p in promoted)
    second = seed_image(reg, "mlops-desa/ray", "v2", layers=1)
    verify(reg, {**digests, "ray": second}, only=["ray"])
    assert cli("--config", cfg.source, "promote", "ray:v2", "--to", "test")[0] == 0
    code, out, _ = cli("--config", cfg.source, "history", "ray", "--env", "test", "--json")
    assert code == 0 and [(e["kind"], e["digest"], e["tags"]) for e in json.loads(out)] == [
        ("promote", digests["ray"], ["v1", "current"]), ("promote", second, ["v2", "current"])]
    code, out, _ = cli("--config", cfg.source, "rollback", "ray", "--env", "test", "--json")
    assert code == 0 and json.loads(out)["digest"] == digests["ray"] == reg.manifest("mlops-test/ray", "current").digest
    code, _, err = cli("--config", cfg.source, "rollback", "ray", "--env", "test")
    assert code == 2 and "nothing to roll back to" in err

"""The promotion gate against a registry process with TLS and authentication (no Docker):
attestations signed as verify-compat signs them, forgeries of each kind, the pair, the history."""
import base64
import dataclasses
import json
import os
import threading
import tracemalloc

import pytest
from helpers import RegistryProcess, make_htpasswd, make_wheel, seed_image

from imagekit import attest, config, diff, history, promote, status
from imagekit.errors import CheckFailed, ConfigError, PreconditionError, RegistryError, UsageError
from imagekit.registry import Registry, copy_blobs, fallback_tag
from support import record_verified, sign_pair
from imagekit import record

GATE = """
[trust]
public_key = "{pub}"
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
def desa(tmp_path, secure_registry, keys):
    """ray and notebook images in desa (v1), made by hand, on a registry with TLS and auth;
    returns (config, registry, digests)."""
    (tmp_path / "imagekit.toml").write_text(GATE.format(pub=keys["trusted"][1]))
    cfg = config.load(tmp_path / "imagekit.toml", env=secure_registry)
    reg = Registry.from_config(cfg)
    digests = {n: seed_image(reg, f"mlops-desa/{repo}", "v1", layers=2) for n, repo in REPOS.items()}
    return cfg, reg, digests


def verify(reg, key, digests, *, passed=True, pair=None, only=None, layouts=(record.BUNDLE, record.ATT)):
    """Attestations as verify-compat signs them, for ``pair`` (default: these digests), attached to
    ``digests`` (only those of ``only``), in ``layouts``."""
    pair = pair or digests
    envelope = sign_pair(key, {n: (f"mlops-desa/{REPOS[n]}", pair[n]) for n in REPOS}, passed=passed)
    for name in REPOS if only is None else only:
        record.write(reg, f"mlops-desa/{REPOS[name]}", digests[name], envelope, layouts)
    return envelope


def untouched(reg, env="test"):
    return all(reg.tags(f"mlops-{env}/{repo}") == [] for repo in REPOS.values())


def test_a_verified_pair_is_promoted_with_its_attestation(desa, keys):
    cfg, reg, digests = desa
    verify(reg, keys["trusted"][0], digests)
    done = {p.image: p for p in promote.promote(cfg, [], all_images=True, to="test")}
    trusted = attest.load_public(str(keys["trusted"][1]))
    for name, repo in REPOS.items():
        assert done[name].digest == digests[name] and done[name].tags == ["v1", "current"]
        assert reg.manifest(f"mlops-test/{repo}", "current").digest == digests[name]
        found = record.verdicts(reg, f"mlops-test/{repo}", digests[name], trusted)  # it travelled along
        assert sorted(f.layout for f, _ in found) == [record.ATT, record.BUNDLE]  # in both layouts
        assert all(verdict.images == digests for _, verdict in found)
    assert [e.digest for e in history.history(cfg, "ray", "test")] == [digests["ray"]]


def forge(case, reg, keys, digests, layout):
    """Attach to desa's ray digest, in ``layout`` only, an attestation forged in the way ``case`` names."""
    trusted, other, only = keys["trusted"][0], keys["other"][0], (layout,)
    if case == "unsigned":
        envelope = verify(reg, trusted, digests, only=[])
        record.write(reg, "mlops-desa/ray", digests["ray"], {**envelope, "signatures": []}, only)
    elif case == "copied":  # a real attestation of another pair, attached to this digest
        envelope = verify(reg, trusted, digests, pair={n: "sha256:" + "1" * 64 for n in REPOS}, only=[])
        record.write(reg, "mlops-desa/ray", digests["ray"], envelope, only)
    elif case == "moved":  # another digest's attestation, listed under this digest
        seed = seed_image(reg, "mlops-desa/ray", "v0", layers=1)
        verify(reg, trusted, {**digests, "ray": seed}, only=["ray"], layouts=only)
        tag = fallback_tag if layout == record.BUNDLE else record.att_tag
        reg.put_manifest("mlops-desa/ray", tag(digests["ray"]), reg.manifest("mlops-desa/ray", tag(seed)))
    elif case == "tampered":  # signed for a failed run, then edited to say it passed
        envelope = verify(reg, trusted, digests, passed=False, only=[])
        data = json.loads(base64.b64decode(envelope["payload"]))
        data["predicate"]["passed"] = True
        record.write(reg, "mlops-desa/ray", digests["ray"],
                     {**envelope, "payload": base64.b64encode(json.dumps(data).encode()).decode()}, only)
    elif case == "other key":
        verify(reg, other, digests, layouts=only)
    elif case == "failed":
        verify(reg, trusted, digests, passed=False, layouts=only)


@pytest.mark.parametrize("layout", [record.BUNDLE, record.ATT])
@pytest.mark.parametrize("case, why", [
    ("none", "has no signed attestation"),
    ("unsigned", "is unsigned"),
    ("copied", "is about other digests .*: copied from another image"),
    ("moved", {record.BUNDLE: "is attached to sha256:.*, not to it", record.ATT: "copied from another image"}),
    ("tampered", "the payload was changed after signing \\(tampered\\)"),
    ("other key", "is signed by another key"),
    ("failed", "says verification did not pass"),
])
def test_a_digest_without_a_valid_attestation_of_its_own_is_refused(desa, keys, case, why, layout):
    """Each forgery, arriving in either layout, is refused by name; nothing is written."""
    cfg, reg, digests = desa
    verify(reg, keys["trusted"][0], digests, only=["notebook"])
    forge(case, reg, keys, digests, layout)
    with pytest.raises(CheckFailed, match=why[layout] if isinstance(why, dict) else why) as e:
        promote.promote(cfg, ["ray:v1", "notebook:v1"], to="test")
    assert "imagekit verify-compat" in str(e.value) and e.value.exit_code == 1
    assert f"mlops-desa/ray@{digests['ray']}" in str(e.value)
    if case != "none":
        assert record.LAYOUTS[layout] in str(e.value)  # the refusal names the layout it arrived in
    assert untouched(reg)  # not even the notebook, whose attestation is fine


def test_a_valid_attestation_only_in_the_legacy_layout_is_not_what_the_gate_reads(desa, keys):
    cfg, reg, digests = desa
    verify(reg, keys["trusted"][0], digests, layouts=(record.ATT,))
    with pytest.raises(CheckFailed, match="only in the cosign legacy sha256-<hex>.att tag layout, and the gate reads "
                                          "the sigstore bundle v0.3 referrer"):
        promote.promote(cfg, ["ray:v1", "notebook:v1"], to="test")
    assert untouched(reg)


def test_the_pair_in_the_target_must_be_a_verified_pair(desa, keys):
    cfg, reg, digests = desa
    key = keys["trusted"][0]
    verify(reg, key, digests)
    with pytest.raises(CheckFailed, match="next to notebook@\\(nothing yet\\)"):  # alone into an empty test
        promote.promote(cfg, ["ray"], to="test")
    assert untouched(reg)
    promote.promote(cfg, [], all_images=True, to="test")
    # ray v2 passed with another notebook (v2), not with the notebook test runs
    v2 = {n: seed_image(reg, f"mlops-desa/{repo}", "v2", layers=1) for n, repo in REPOS.items()}
    verify(reg, key, v2)
    with pytest.raises(CheckFailed) as e:
        promote.promote(cfg, ["ray:v2"], to="test")
    assert f"ray@{v2['ray']} would run in test next to notebook@{digests['notebook']}" in str(e.value)
    assert f"it passed with notebook@{v2['notebook']}" in str(e.value) and "--all" in str(e.value)
    assert reg.manifest("mlops-test/ray", "current").digest == digests["ray"] and not reg.manifest("mlops-test/ray", "v2")
    done = promote.promote(cfg, ["ray:v2", "notebook:v2"], to="test")  # the pair as one step
    assert {p.image: p.digest for p in done} == v2
    # a ray that passed with the notebook already in test may go alone
    v3 = seed_image(reg, "mlops-desa/ray", "v3", layers=1)
    verify(reg, key, {"ray": v3, "notebook": v2["notebook"]}, only=["ray"])
    assert promote.promote(cfg, ["ray:v3"], to="test")[0].digest == v3


def test_no_trusted_key_no_promotion(desa, keys, tmp_path, secure_registry):
    _, reg, digests = desa
    verify(reg, keys["trusted"][0], digests)
    (tmp_path / "imagekit.toml").write_text(GATE.split("[[environments]]", 1)[1].join(["[[environments]]", ""]))
    cfg = config.load(tmp_path / "imagekit.toml", env=secure_registry)
    with pytest.raises(ConfigError, match="trust.public_key is not set") as e:
        promote.promote(cfg, [], all_images=True, to="test")
    assert e.value.exit_code == 2 and untouched(reg)


def test_a_mixed_batch_writes_nothing(desa, keys):
    cfg, reg, digests = desa
    verify(reg, keys["trusted"][0], digests, only=["ray"])  # the notebook has no attestation
    with pytest.raises(CheckFailed, match="scipy-notebook@.* has no signed attestation"):
        promote.promote(cfg, ["ray:v1", "notebook:v1"], to="test")
    assert untouched(reg)  # not even the verified ray
    with pytest.raises(CheckFailed, match="desa holds no set of notebook, ray that one valid attestation names"):
        promote.promote(cfg, [], all_images=True, to="test")  # nor is a half-attested set chosen
    assert untouched(reg)


def test_skipping_an_environment_needs_force(desa, keys):
    cfg, reg, digests = desa
    verify(reg, keys["trusted"][0], digests)
    with pytest.raises(UsageError, match="desa -> prod skips test"):
        promote.promote(cfg, [], all_images=True, to="prod", from_env="desa")
    assert untouched(reg, "prod")
    done = promote.promote(cfg, [], all_images=True, to="prod", from_env="desa", force=True)
    assert {p.image: p.digest for p in done} == digests


def test_a_skipped_environment_through_the_cli_is_exit_2_with_the_envelope(desa, keys, cli, monkeypatch, secure_registry):
    cfg, reg, digests = desa
    verify(reg, keys["trusted"][0], digests)
    for name, value in secure_registry.items():
        monkeypatch.setenv(name, value)
    code, out, _ = cli("--config", cfg.source, "promote", "--all", "--to", "prod", "--from", "desa", "--json")
    error = json.loads(out)["error"]
    assert code == 2 and "desa -> prod skips test" in error["message"] and "--force" in error["hint"]
    assert untouched(reg, "prod")


def test_image_at_digest_promotes_that_digest_under_current_only(desa, keys):
    cfg, reg, digests = desa
    verify(reg, keys["trusted"][0], digests)
    done = promote.promote(cfg, [f"{n}@{d}" for n, d in digests.items()], to="test")[0]
    assert done.tags == ["current"]
    assert [t for t in reg.tags("mlops-test/ray") if not t.startswith(history.HISTORY_PREFIX)] == sorted(
        ["current", fallback_tag(digests["ray"]), record.att_tag(digests["ray"])])  # and the attestation's layouts


def test_promote_history_and_rollback_through_the_cli_print_json_data(desa, keys, cli, monkeypatch, secure_registry):
    cfg, reg, digests = desa
    verify(reg, keys["trusted"][0], digests)
    for name, value in secure_registry.items():
        monkeypatch.setenv(name, value)
    code, out, err = cli("--config", cfg.source, "promote", "--all", "--to", "test", "--json")
    assert code == 0, err
    promoted = json.loads(out)["result"]
    assert code == 0 and {p["image"]: p["digest"] for p in promoted} == digests
    assert all(isinstance(p["tags"], list) and p["kind"] == "promote" for p in promoted)
    second = seed_image(reg, "mlops-desa/ray", "v2", layers=1)
    verify(reg, keys["trusted"][0], {**digests, "ray": second}, only=["ray"])
    assert cli("--config", cfg.source, "promote", "ray:v2", "--to", "test")[0] == 0
    code, out, _ = cli("--config", cfg.source, "history", "ray", "--env", "test", "--json")
    assert code == 0 and [(e["kind"], e["digest"], e["tags"]) for e in json.loads(out)["result"]] == [
        ("promote", digests["ray"], ["v1", "current"]), ("promote", second, ["v2", "current"])]
    code, out, _ = cli("--config", cfg.source, "rollback", "ray", "--env", "test", "--json")
    assert code == 0 and json.loads(out)["result"][0]["digest"] == digests["ray"] == reg.manifest("mlops-test/ray",
                                                                                              "current").digest
    code, _, err = cli("--config", cfg.source, "rollback", "ray", "--env", "test")
    assert code == 2 and "nothing to roll back to" in err
    code, out, _ = cli("--config", cfg.source, "promote", "ray:v2", "--to", "test", "--from", "desa", "--json")
    assert code == 0 and reg.manifest("mlops-test/ray", "current").digest == second


def test_concurrent_promotions_and_rollbacks_lose_no_history_entry(desa, keys):
    cfg, reg, digests = desa
    key = keys["trusted"][0]
    verify(reg, key, digests)
    promote.promote(cfg, [], all_images=True, to="test")
    rays = [seed_image(reg, "mlops-desa/ray", f"v{i}", layers=1) for i in range(2, 7)]
    for ray in rays:
        verify(reg, key, {**digests, "ray": ray}, only=["ray"])
    promote.promote(cfg, ["ray:v2"], to="test")
    errors = []

    def run(action):
        try:
            action()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    actions = [lambda i=i: promote.promote(cfg, [f"ray:v{i}"], to="test") for i in range(3, 7)]
    actions += [lambda: history.rollback(cfg, ["ray"], "test")] * 2
    threads = [threading.Thread(target=run, args=(a,)) for a in actions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    entries = history.history(cfg, "ray", "test")
    assert len(entries) == 2 + len(actions)
    assert sorted(e.digest for e in entries if e.kind == "promote") == sorted([digests["ray"], *rays])
    assert reg.manifest("mlops-test/ray", "current").digest == history.current_stack(entries)[-1]


def test_an_entry_listed_before_its_manifest_is_readable_is_read_once_it_is():
    """The registry lists a tag as soon as its folder exists, before the manifest's link is written:
    another writer's entry in flight. It is left for later, not read as an entry."""
    entry = history.HistoryEntry("promote", "sha256:" + "a" * 64, ["v1"], "2026-12-05T00:00:00Z", "desa")
    stored = {f"{history.HISTORY_PREFIX}1-aa": None}

    class Registry:
        def tags(self, repo):
            return list(stored)

        def get_artifact(self, repo, tag):
            return stored[tag]

    log = history.Log(Registry(), "mlops-test/ray")
    assert log.entries() == []
    stored[f"{history.HISTORY_PREFIX}1-aa"] = dataclasses.asdict(entry)
    assert log.entries() == [entry]


TWO_REGISTRIES = """
[trust]
public_key = "{pub}"
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
def two_registries(tmp_path, keys):
    """desa and prod on registries of their own, each with a robot account of its own."""
    regs = {}
    for env, user in (("desa", "robot$desa+ci"), ("prod", "robot$prod+ci")):
        regs[env] = RegistryProcess(tmp_path / env, htpasswd=make_htpasswd(tmp_path / f"{env}.htpasswd", user,
                                                                           f"{env}-secret")).start()
    (tmp_path / "imagekit.toml").write_text(TWO_REGISTRIES.format(prod=regs["prod"].host, pub=keys["trusted"][1]))
    yield tmp_path / "imagekit.toml", regs, keys["trusted"][0]
    for reg in regs.values():
        reg.stop()


DESA = {"IMAGEKIT_REGISTRY_USERNAME": "robot$desa+ci", "IMAGEKIT_REGISTRY_PASSWORD": "desa-secret"}


def test_each_environment_uses_its_own_credentials(two_registries):
    path, regs, key = two_registries
    env = {"IMAGEKIT_REGISTRY_URL": regs["desa"].host, **DESA}
    cfg = config.load(path, env=env)
    digest = seed_image(Registry.from_config(cfg, cfg.environment("desa")), "mlops-desa/ray", "v1", layers=2,
                        verified=key)
    with pytest.raises(RegistryError, match="refused the credentials") as e:  # desa's robot cannot write prod
        promote.promote(cfg, ["ray:v1"], to="prod")
    assert "IMAGEKIT_ENV_<NAME>_USERNAME" in str(e.value)
    cfg = config.load(path, env={**env, "IMAGEKIT_ENV_PROD_USERNAME": "robot$prod+ci",
                                 "IMAGEKIT_ENV_PROD_PASSWORD": "prod-secret"})
    assert not cfg.warnings  # the environment's own variables are known ones
    assert promote.promote(cfg, ["ray:v1"], to="prod")[0].digest == digest


def test_a_large_layer_crosses_registries_in_constant_memory(tmp_path, registry_process, keys):
    other = RegistryProcess(tmp_path / "other").start()
    try:
        (tmp_path / "imagekit.toml").write_text(TWO_REGISTRIES.format(prod=other.host, pub=keys["trusted"][1]))
        cfg = config.load(tmp_path / "imagekit.toml", env={"IMAGEKIT_REGISTRY_URL": registry_process.host})
        reg = Registry.from_config(cfg)
        layer = os.urandom(96 << 20)
        digest = seed_image(reg, "mlops-desa/ray", "v1", layers=0, verified=keys["trusted"][0], extra=layer)
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
        history.history(cfg, "ray", "test")


BATCH = GATE + """
[[images]]
name = "batch"
tags = ["v1"]
"""


def test_an_image_outside_the_verified_set_is_named_and_left_out(desa, tmp_path, secure_registry, keys):
    _, reg, digests = desa
    (tmp_path / "imagekit.toml").write_text(BATCH.format(pub=keys["trusted"][1]))
    cfg = config.load(tmp_path / "imagekit.toml", env=secure_registry)
    batch = seed_image(reg, "mlops-desa/batch", "v1", layers=1, verified=keys["trusted"][0], name="batch")
    verify(reg, keys["trusted"][0], digests)
    lines = []
    done = promote.promote(cfg, [], all_images=True, to="test", on_line=lines.append)
    assert {p.image for p in done} == {"ray", "notebook"}  # the verified set, as one step
    assert "batch: not promoted: it is not in verify.images, so no verification covers it" in lines
    with pytest.raises(CheckFailed, match="batch@.* is not in verify.images"):
        promote.promote(cfg, ["batch"], to="test")
    assert reg.tags("mlops-test/batch") == []
    with_batch = config.load(tmp_path / "imagekit.toml", env={**secure_registry,
                                                              "IMAGEKIT_VERIFY_IMAGES": "notebook,ray,batch"})
    record_verified(reg, keys["trusted"][0], {**{n: (f"mlops-desa/{REPOS[n]}", d) for n, d in digests.items()},
                                              "batch": ("mlops-desa/batch", batch)})
    assert {p.image for p in promote.promote(with_batch, [], all_images=True, to="test")} == {"ray", "notebook", "batch"}
    with pytest.raises(ConfigError, match="'spark' is not an image of this project"):
        promote.promote(config.load(tmp_path / "imagekit.toml", env={"IMAGEKIT_VERIFY_IMAGES": "ray,spark"}), [],
                        all_images=True, to="test")


def labels(python, lock, **packages):
    return {"org.imagekit.python.version": python, "org.imagekit.lock.sha256": lock,
            "org.imagekit.packages": " ".join(f"{n.replace('_', '-')}=={v}" for n, v in packages.items())}


def test_diff_ranks_what_changes_by_the_risk_for_unpickling(desa, keys, secure_registry, tmp_path, cli, monkeypatch):
    cfg, reg, digests = desa
    make_wheel(tmp_path / "private", "sunat-models", "1.0")
    cfg = config.load(cfg.source, env={**secure_registry, "IMAGEKIT_LOCK_FIND_LINKS": str(tmp_path / "private")})
    old = labels("3.11.2", "a" * 64, numpy="2.0.0", requests="2.31.0", scikit_learn="1.6.1", sunat_models="1.0",
                 cloudpickle="3.0.0")
    new = labels("3.11.7", "b" * 64, numpy="2.1.0", requests="2.32.0", scikit_learn="1.6.1", sunat_models="1.1",
                 urllib3="2.0.0")
    seed_image(reg, "mlops-desa/ray", "old", layers=1, labels=old)
    seed_image(reg, "mlops-desa/ray", "new", layers=1, labels=new)
    (d,) = diff.diff(cfg, ["desa/ray:old", "ray:new"], [])
    assert [(c.name, c.a, c.b, c.kind, c.risk) for c in d.changes] == [
        ("python", "3.11.2", "3.11.7", "changed", "high"), ("numpy", "2.0.0", "2.1.0", "changed", "high"),
        ("cloudpickle", "3.0.0", "", "removed", "high"), ("sunat-models", "1.0", "1.1", "changed", "high"),
        ("requests", "2.31.0", "2.32.0", "changed", "low"), ("urllib3", "", "2.0.0", "added", "low")]
    assert d.lock == ("a" * 64, "b" * 64) and not d.same_digest
    for name, value in secure_registry.items():
        monkeypatch.setenv(name, value)
    code, out, _ = cli("--config", cfg.source, "diff", "ray:old", "mlops-desa/ray:old", "--json")
    assert code == 0 and json.loads(out)["result"][0]["changes"] == [] and json.loads(out)["result"][0]["same_digest"]
    code, _, err = cli("--config", cfg.source, "diff", "ray:v1", "ray:old")  # v1 was not built by imagekit
    assert code == 2 and "has no org.imagekit.packages label" in err
    code, _, err = cli("--config", cfg.source, "diff", "ray:old")
    assert code == 2 and "two references" in err


def test_status_and_diff_between_environments_on_a_prepared_registry(desa, keys, cli, monkeypatch, secure_registry):
    cfg, reg, digests = desa
    key = keys["trusted"][0]
    pair = {n: seed_image(reg, f"mlops-desa/{repo}", "v2", layers=1, labels=labels("3.11.2", "a" * 64, numpy="2.0.0"))
            for n, repo in REPOS.items()}
    verify(reg, key, pair)
    promote.promote(cfg, [], all_images=True, to="test")
    ray3 = seed_image(reg, "mlops-desa/ray", "v3", layers=1, labels=labels("3.11.2", "c" * 64, numpy="2.1.0"))
    verify(reg, key, {**pair, "ray": ray3}, only=["ray"])
    promote.promote(cfg, ["ray:v3"], to="test")  # ray v3 passed with the notebook test runs
    verify(reg, key, {**pair, "ray": ray3}, only=["notebook"])  # as verify-compat attaches it: to both
    desa_env, test_env, prod_env = status.status(cfg)
    assert not desa_env.pair_verified and desa_env.images[0].current == "" and not desa_env.images[0].verified
    assert test_env.pair_verified and not prod_env.pair_verified
    notebook, ray = test_env.images
    assert (ray.image, ray.current, ray.version_tag, ray.version_digest) == ("ray", ray3, "v3", ray3)
    assert ray.verified and ray.partners == {"ray": ray3, "notebook": pair["notebook"]}
    assert (notebook.version_tag, notebook.version_digest, notebook.current) == ("v2", pair["notebook"],
                                                                                pair["notebook"])
    # someone moves test's notebook by hand, around imagekit: status sees it
    manifest = reg.manifest("mlops-desa/scipy-notebook", digests["notebook"])
    copy_blobs(reg, "mlops-desa/scipy-notebook", reg, "mlops-test/scipy-notebook", manifest, lambda line: None)
    reg.put_manifest("mlops-test/scipy-notebook", "current", manifest)
    for name, value in secure_registry.items():
        monkeypatch.setenv(name, value)
    code, out, _ = cli("--config", cfg.source, "status", "--env", "test", "--json")
    (test_env,) = json.loads(out)["result"]
    assert code == 0 and test_env["pair_verified"] is False
    notebook = test_env["images"][0]
    assert notebook["current"] == digests["notebook"] and not notebook["verified"]
    assert notebook["why"] == "no signed attestation"
    code, out, _ = cli("--config", cfg.source, "diff", "--env", "desa", "--env", "test")
    assert code == 2 and "has no org.imagekit.packages label" in out + _  # test's notebook now is the unlabelled v1


def release(reg, version, created="2026-12-01T10:00:00+00:00"):
    """A ray and notebook release as `imagekit push` leaves it (version and creation labels)."""
    meta = {"org.opencontainers.image.created": created, "org.opencontainers.image.version": version}
    return {n: seed_image(reg, f"mlops-desa/{repo}", version, layers=1, labels=meta) for n, repo in REPOS.items()}


def test_promote_all_takes_the_verified_release_not_an_image_derived_by_hand_beside_it(desa, keys):
    cfg, reg, _ = desa
    v12 = release(reg, "v12")
    verify(reg, keys["trusted"][0], v12)
    # built FROM the release by hand and pushed next to it: it inherits its labels, and is newer
    derived = seed_image(reg, "mlops-desa/ray", "v12-debug", layers=2, labels={
        "org.opencontainers.image.created": "2026-12-02T09:00:00+00:00", "org.opencontainers.image.version": "v12"})
    lines = []
    done = {p.image: p for p in promote.promote(cfg, [], all_images=True, to="test", on_line=lines.append)}
    assert {n: p.digest for n, p in done.items()} == v12 and derived not in {p.digest for p in done.values()}
    assert done["ray"].tags == ["v12", "current"]
    chose = next(line for line in lines if line.startswith("promoting the newest verified set in desa"))
    assert f"ray@{v12['ray']} (v12)" in chose and f"notebook@{v12['notebook']} (v12)" in chose


def test_promote_all_takes_the_newest_verified_release_whatever_its_tag_sorts_as(desa, keys):
    cfg, reg, _ = desa
    v9, v12 = release(reg, "v9"), release(reg, "v12")  # one commit: the same creation time
    verify(reg, keys["trusted"][0], v9)
    verify(reg, keys["trusted"][0], v12)  # verified after v9 ("v9" sorts after "v12" as a string)
    done = {p.image: p for p in promote.promote(cfg, [], all_images=True, to="test")}
    assert {n: p.digest for n, p in done.items()} == v12 and done["ray"].tags == ["v12", "current"]
    (desa_env,) = status.status(cfg, ["desa"])
    assert {i.image: i.version_tag for i in desa_env.images} == {"notebook": "v12", "ray": "v12"}


def signed_run(key, digests, scenarios: dict) -> dict:
    """An envelope for the pair, of a run whose scenarios are ``scenarios`` (name -> result)."""
    pair = {n: (f"mlops-desa/{REPOS[n]}", digests[n]) for n in REPOS}
    return attest.sign(attest.statement(pair, passed=True, lock="0" * 64, python="3.11.2", s3_server="test",
                                        scenarios=scenarios), attest.load_private(str(key)))


def attach(reg, digests, envelope):
    for name in REPOS:
        record.write(reg, f"mlops-desa/{REPOS[name]}", digests[name], envelope)


def test_the_gate_requires_every_scenario_of_the_committed_notebooks_folder(desa, keys, tmp_path, secure_registry):
    cfg, reg, digests = desa
    folder = tmp_path / "examples" / "notebooks"
    folder.mkdir(parents=True)
    for name in ("iris", "cybersec"):
        (folder / f"{name}.ipynb").write_text("{}")
    attach(reg, digests, signed_run(keys["trusted"][0], digests, {"iris": {"passed": True}}))
    with pytest.raises(CheckFailed, match="does not cover the required scenario cybersec \\(trust.required_scenarios\\)"):
        promote.promote(cfg, [], all_images=True, to="test")
    empty = tmp_path / "empty"
    empty.mkdir()  # pointing verify.notebooks elsewhere from the environment does not lower what is required
    lowered = config.load(cfg.source, env={**secure_registry, "IMAGEKIT_VERIFY_NOTEBOOKS": str(empty)})
    with pytest.raises(CheckFailed, match="does not cover the required scenario cybersec"):
        promote.promote(lowered, [], all_images=True, to="test")
    assert untouched(reg)
    attach(reg, digests, signed_run(keys["trusted"][0], digests, {"iris": {"passed": True},
                                                                 "cybersec": {"passed": True}}))
    assert {p.digest for p in promote.promote(cfg, [], all_images=True, to="test")} == set(digests.values())


def test_a_required_scenario_pinned_by_digest_refuses_a_run_of_another_notebook(desa, keys, tmp_path, secure_registry):
    cfg, reg, digests = desa
    pinned, edited = "a" * 64, "b" * 64
    env = {**secure_registry, "IMAGEKIT_TRUST_REQUIRED_SCENARIOS": f"iris@sha256:{pinned}"}
    pcfg = config.load(cfg.source, env=env)
    attach(reg, digests, signed_run(keys["trusted"][0], digests, {"iris": {"passed": True, "notebook_sha256": edited}}))
    with pytest.raises(CheckFailed, match="ran iris from a notebook with sha256 bbbbbbbbbbbb, not the one "
                                          "trust.required_scenarios pins \\(aaaaaaaaaaaa\\)"):
        promote.promote(pcfg, [], all_images=True, to="test")
    attach(reg, digests, signed_run(keys["trusted"][0], digests, {"iris": {"passed": False, "notebook_sha256": pinned}}))
    with pytest.raises(CheckFailed, match="says the required scenario iris did not pass"):
        promote.promote(pcfg, ["ray:v1", "notebook:v1"], to="test")
    assert untouched(reg)
    attach(reg, digests, signed_run(keys["trusted"][0], digests, {"iris": {"passed": True, "notebook_sha256": pinned}}))
    assert len(promote.promote(pcfg, [], all_images=True, to="test")) == 2
    with pytest.raises(ConfigError, match="pin a notebook as name@sha256"):
        promote.promote(config.load(cfg.source, env={**env, "IMAGEKIT_TRUST_REQUIRED_SCENARIOS": "iris@abc"}), [],
                        all_images=True, to="test")


def signed_payload(key, payload: bytes) -> dict:
    """A DSSE envelope over ``payload`` (any bytes), signed with ``key``: a valid signature on
    something that is not imagekit's statement."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    private = attest.load_private(str(key))
    sig = private.sign(attest.pae(attest.PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    return {"payloadType": attest.PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": attest.keyid(private.public_key()), "sig": base64.b64encode(sig).decode()}]}


@pytest.mark.parametrize("case, why", [
    ("not dsse", "is not a DSSE envelope"),
    ("not json", "has a signed payload that is not JSON"),
    ("other predicate", "is of another kind \\(https://slsa.dev/verification_summary/v1\\)"),
])
def test_a_signed_envelope_that_is_not_a_verify_compat_statement_is_refused(desa, keys, case, why):
    cfg, reg, digests = desa
    key = keys["trusted"][0]
    verify(reg, key, digests, only=["notebook"])
    if case == "not dsse":
        envelope = {"payloadType": attest.PAYLOAD_TYPE, "payload": "%% not base64 %%", "signatures": [{"sig": ""}]}
    elif case == "not json":
        envelope = signed_payload(key, b"passed: true\n")
    else:
        statement = json.loads(base64.b64decode(sign_pair(key, {"ray": ("mlops-desa/ray", digests["ray"])})["payload"]))
        envelope = signed_payload(key, json.dumps({**statement, "predicateType":
                                                   "https://slsa.dev/verification_summary/v1"}).encode())
    record.write(reg, "mlops-desa/ray", digests["ray"], envelope)
    with pytest.raises(CheckFailed, match=why):
        promote.promote(cfg, ["ray:v1", "notebook:v1"], to="test")
    assert untouched(reg)


def test_a_trusted_key_of_another_kind_is_a_config_error(desa, tmp_path, secure_registry):
    import subprocess

    cfg, reg, _ = desa
    rsa = tmp_path / "rsa.pub"
    subprocess.run(f"openssl genrsa 2048 2>/dev/null | openssl rsa -pubout -out {rsa} 2>/dev/null", shell=True, check=True)
    other = config.load(cfg.source, env={**secure_registry, "IMAGEKIT_TRUST_PUBLIC_KEY": str(rsa)})
    with pytest.raises(ConfigError, match="key 'trust.public_key'.*the public key is not an ECDSA P-256 key") as e:
        promote.promote(other, [], all_images=True, to="test")
    assert e.value.exit_code == 2
    rsa_key = tmp_path / "rsa.key"
    subprocess.run(f"openssl genrsa -out {rsa_key} 2048 2>/dev/null", shell=True, check=True)
    with pytest.raises(ConfigError, match="the signing key is not an ECDSA P-256 key"):
        attest.load_private(str(rsa_key))
    assert untouched(reg)


@pytest.mark.parametrize("args, why", [
    ({"to": "desa"}, "desa is the first environment: images enter it by `imagekit push`"),
    ({"to": "test", "from_env": "prod"}, "promotion goes forward: prod comes after test"),
    ({"to": "test", "from_env": "test"}, "promotion goes forward: test comes after test"),
])
def test_promoting_into_the_first_environment_or_backwards_is_a_usage_error(desa, keys, args, why):
    cfg, reg, digests = desa
    verify(reg, keys["trusted"][0], digests)
    with pytest.raises(UsageError, match=why) as e:
        promote.promote(cfg, [], all_images=True, **args)
    assert e.value.exit_code == 2 and untouched(reg) and untouched(reg, "prod")


def test_a_source_tag_that_does_not_exist_is_named(desa, keys):
    cfg, reg, digests = desa
    verify(reg, keys["trusted"][0], digests)
    with pytest.raises(CheckFailed, match="mlops-desa/ray:v9 does not exist \\(promote to desa first\\?\\)"):
        promote.promote(cfg, ["ray:v9", "notebook:v1"], to="test")
    assert untouched(reg)


def test_a_rollback_whose_target_was_deleted_says_so_and_changes_nothing(desa, keys):
    cfg, reg, digests = desa
    key = keys["trusted"][0]
    verify(reg, key, digests)
    promote.promote(cfg, [], all_images=True, to="test")
    newer = seed_image(reg, "mlops-desa/ray", "v2", layers=1)
    verify(reg, key, {**digests, "ray": newer}, only=["ray"])
    promote.promote(cfg, ["ray:v2"], to="test")
    reg._request("DELETE", f"{reg.base}/v2/mlops-test/ray/manifests/{digests['ray']}",  # retention removed it
                 scope="repository:mlops-test/ray:pull,push,delete")
    entries = history.history(cfg, "ray", "test")
    with pytest.raises(RegistryError, match=f"mlops-test/ray@{digests['ray']} is no longer in the registry"):
        history.rollback(cfg, ["ray"], "test")
    assert history.history(cfg, "ray", "test") == entries
    assert reg.manifest("mlops-test/ray", "current").digest == newer


@pytest.fixture
def fronted(tmp_path, registry_process, keys):
    """desa (v1 of both images, verified) on a registry reached through a front whose faults a test sets:
    ``faults`` holds (method, path prefix, status) the front answers instead of the registry."""
    from support import RegistryFront

    faults = []

    def rule(method, path):
        for fault in faults:
            if method == fault[0] and path.startswith(fault[1]):
                return fault[2], b'{"errors":[{"code":"UNKNOWN","message":"injected by the test"}]}'
        return None
    front = RegistryFront(registry_process.host, rule)
    yield (*verified_desa(tmp_path, front.host, keys), faults)
    front.stop()


def verified_desa(tmp_path, host, keys):
    """(cfg, reg, digests): v1 of both images in desa on the registry at ``host``, verified."""
    (tmp_path / "imagekit.toml").write_text(GATE.format(pub=keys["trusted"][1]))
    cfg = config.load(tmp_path / "imagekit.toml", env={"IMAGEKIT_REGISTRY_URL": host})
    reg = Registry.from_config(cfg)
    digests = {n: seed_image(reg, f"mlops-desa/{repo}", "v1", layers=2) for n, repo in REPOS.items()}
    verify(reg, keys["trusted"][0], digests)
    return cfg, reg, digests


def moved(reg):
    """The tags that name an image in test (not the attestations' own)."""
    return {repo: [t for t in reg.tags(f"mlops-test/{repo}") if t in ("v1", "current")] for repo in REPOS.values()}


def test_a_promotion_that_fails_on_the_second_image_moves_no_tag_and_a_rerun_completes_it(fronted):
    cfg, reg, digests, faults = fronted
    faults.append(("PUT", "/v2/mlops-test/ray/manifests/sha256:", 500))  # the second image's manifest
    with pytest.raises(RegistryError, match="answered 500"):
        promote.promote(cfg, [], all_images=True, to="test")
    assert moved(reg) == {"ray": [], "scipy-notebook": []}  # the notebook's copy was complete: no tag moved
    faults.clear()
    done = promote.promote(cfg, [], all_images=True, to="test")
    assert {p.image for p in done} == {"ray", "notebook"}
    assert moved(reg) == {"ray": ["current", "v1"], "scipy-notebook": ["current", "v1"]}


def test_a_tag_that_fails_to_move_is_named_with_those_that_moved_and_a_rerun_completes_it(fronted):
    cfg, reg, digests, faults = fronted
    faults.append(("PUT", "/v2/mlops-test/ray/manifests/v1", 500))
    with pytest.raises(RegistryError) as e:
        promote.promote(cfg, [], all_images=True, to="test")
    assert "stopped while its tags moved" in e.value.message
    assert "tags moved so far: mlops-test/scipy-notebook:v1." in e.value.hint and "run the same" in e.value.hint.lower()
    assert moved(reg) == {"ray": [], "scipy-notebook": ["v1"]}  # no `current` moved: the environment runs as before
    faults.clear()
    promote.promote(cfg, [], all_images=True, to="test")
    assert moved(reg) == {"ray": ["current", "v1"], "scipy-notebook": ["current", "v1"]}
    assert [e.digest for e in history.history(cfg, "ray", "test")] == [digests["ray"]]


def test_an_attestation_the_registry_will_not_give_is_named_by_the_gate(fronted):
    cfg, reg, digests, faults = fronted
    faults.append(("GET", "/v2/mlops-desa/ray/blobs/", 500))  # the attestations' blobs (and the image's)
    with pytest.raises(CheckFailed) as e:
        promote.promote(cfg, ["ray:v1", "notebook:v1"], to="test")
    assert "could not be read from the registry" in str(e.value) and "answered 500" in str(e.value)
    assert "is not a DSSE envelope" not in str(e.value)


def test_history_follows_what_each_runner_saw_not_their_clocks(desa, keys, monkeypatch):
    """A runner whose clock is 10 minutes behind promotes after another: history and rollback see the
    promotions in the order they happened; two runners at once both land, in one order for everyone."""
    import datetime
    import threading

    cfg, reg, digests = desa
    key = keys["trusted"][0]
    verify(reg, key, digests)
    behind = threading.local()
    real = history.now
    monkeypatch.setattr(history, "now", lambda: (datetime.datetime.fromisoformat(real()) - datetime.timedelta(
        minutes=10)).isoformat() if getattr(behind, "on", False) else real())
    promote.promote(cfg, [], all_images=True, to="test")
    newer = seed_image(reg, "mlops-desa/ray", "v2", layers=1)
    verify(reg, key, {**digests, "ray": newer}, only=["ray"])

    def late():
        behind.on = True
        promote.promote(cfg, ["ray:v2"], to="test")
    runner = threading.Thread(target=late)
    runner.start()
    runner.join()
    assert [e.digest for e in history.history(cfg, "ray", "test")] == [digests["ray"], newer]
    assert reg.manifest("mlops-test/ray", "current").digest == newer
    entries = history.history(cfg, "ray", "test")
    assert entries[1].when < entries[0].when  # its clock said earlier; the order did not listen
    history.rollback(cfg, ["ray"], "test")
    assert reg.manifest("mlops-test/ray", "current").digest == digests["ray"]
    third = seed_image(reg, "mlops-desa/ray", "v3", layers=1)
    verify(reg, key, {**digests, "ray": third}, only=["ray"])
    runners = [threading.Thread(target=promote.promote, args=(cfg, [f"ray:{v}"]), kwargs={"to": "test"})
               for v in ("v2", "v3")]
    for r in runners:
        r.start()
    for r in runners:
        r.join()
    seen = [e.digest for e in history.history(cfg, "ray", "test")]
    assert seen[:3] == [digests["ray"], newer, digests["ray"]] and sorted(seen[3:]) == sorted([newer, third])
    assert reg.manifest("mlops-test/ray", "current").digest == seen[-1]  # what every reader's order ends with


def test_a_rollback_keeps_the_environment_on_a_verified_set(desa, keys):
    """The pair promoted together twice: rolling ray back alone would run it next to a notebook it was
    never verified with: refused, naming the partner; --all moves both back, together."""
    cfg, reg, digests = desa
    key = keys["trusted"][0]
    verify(reg, key, digests)
    promote.promote(cfg, [], all_images=True, to="test")
    second = {n: seed_image(reg, f"mlops-desa/{repo}", "v2", layers=1) for n, repo in REPOS.items()}
    verify(reg, key, second)
    promote.promote(cfg, ["ray:v2", "notebook:v2"], to="test")
    with pytest.raises(CheckFailed) as e:
        history.rollback(cfg, ["ray"], "test")
    assert f"ray@{digests['ray']} would run in test next to notebook@{second['notebook']}" in str(e.value)
    assert "imagekit rollback --all --env test" in str(e.value)
    assert reg.manifest("mlops-test/ray", "current").digest == second["ray"]  # nothing moved
    done = history.rollback(cfg, [], "test", all_images=True)
    assert {r.image: r.digest for r in done} == digests
    assert {n: reg.manifest(f"mlops-test/{repo}", "current").digest for n, repo in REPOS.items()} == digests
    assert status.status(cfg, ["test"])[0].pair_verified


def test_status_works_before_there_is_a_key_and_shows_every_image_unverified(desa, keys, tmp_path, cli):
    cfg, reg, digests = desa
    verify(reg, keys["trusted"][0], digests)
    promote.promote(cfg, [], all_images=True, to="test")
    text = open(cfg.source).read().replace(f'public_key = "{keys["trusted"][1]}"\n', "")
    (tmp_path / "nokey.toml").write_text(text)
    keyless = config.load(tmp_path / "nokey.toml", env=dict(cfg.env))
    assert not keyless.trust.public_key
    _, test_env, _ = status.status(keyless)
    assert [(i.current, i.verified) for i in test_env.images] == [(digests["notebook"], False), (digests["ray"], False)]
    assert all("trust.public_key is not set" in i.why for i in test_env.images)


def test_the_first_environment_manifests_are_its_newest_verified_set(desa, keys):
    """Images enter desa by push (no `current` there): its manifests pin the set verified together."""
    from imagekit import manifests

    cfg, reg, digests = desa
    verify(reg, keys["trusted"][0], digests)
    pinned = manifests.pinned(cfg, "desa")
    assert pinned.ray.endswith(f"/mlops-desa/ray@{digests['ray']}") and pinned.notebook_digest == digests["notebook"]
    assert (pinned.ray_tag, pinned.notebook_tag) == ("v1", "v1")


def test_promoting_the_same_digests_again_writes_no_tag(tmp_path, registry_process, keys):
    """The second promotion of the same set into prod is a no-op: Harbor's immutability (the front
    refuses any PUT to a tag that exists) sees no write, and the history gains no entry."""
    from support import RegistryFront, immutable_tags

    refused = []
    front = RegistryFront(registry_process.host, immutable_tags(registry_process.host, refused))
    try:
        cfg, reg, digests = verified_desa(tmp_path, front.host, keys)
        promote.promote(cfg, [], all_images=True, to="test")
        promote.promote(cfg, [], all_images=True, to="prod")
        entries = history.history(cfg, "ray", "prod")
        again = promote.promote(cfg, [], all_images=True, to="prod")
        assert {p.image: p.digest for p in again} == digests
        assert refused == [] and history.history(cfg, "ray", "prod") == entries
        assert reg.manifest("mlops-prod/ray", "current").digest == digests["ray"]
    finally:
        front.stop()


import json

from imagekit import config, doctor


def test_doctor_finds_everything_here(cfg, engine, base_image, built):
    report = doctor.diagnose(cfg)
    checks = {c.name: c for c in report.checks}
    assert report.ok, [c for c in report.checks if not c.ok]
    assert set(checks) == {"docker engine", "registry", "OS image", "S3 server for verify-compat", "debootstrap",
                           "cache", "lock"}
    version = engine.info().version
    assert f"Docker {version} " in checks["docker engine"].detail and "BuildKit" in checks["docker engine"].detail
    assert "answers the OCI distribution API" in checks["registry"].detail
    assert "stand-in image 's3'" in checks["S3 server for verify-compat"].detail
    assert " 0 wheels" not in checks["cache"].detail and "Python layers" in checks["cache"].detail


def test_doctor_names_what_is_missing_and_what_to_do(cfg, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    broken = config.load(cfg.source, env={"IMAGEKIT_REGISTRY_URL": "127.0.0.1:1", "IMAGEKIT_OS_TAG": "absent:x",
                                          "IMAGEKIT_OS_IMAGE": "absent:y", "IMAGEKIT_VERIFY_S3_STANDIN": "nope",
                                          "IMAGEKIT_CACHE_DIR": str(tmp_path / "a-file")})
    report = doctor.diagnose(broken)
    failed = {c.name: c for c in report.checks if not c.ok}
    assert not report.ok and set(failed) == {"registry", "OS image", "S3 server for verify-compat", "cache"}
    assert "not reachable" in failed["registry"].detail and "make dev-up" in failed["registry"].fix
    assert failed["OS image"].fix == "run `imagekit os`"
    assert "no image named 'nope'" in failed["S3 server for verify-compat"].detail
    assert "cannot write to" in failed["cache"].detail


def test_doctor_exits_1_through_the_cli_when_something_is_missing(cfg, cli, monkeypatch, base_image, built):
    """Only the registry is missing: the OS image and the S3 stand-in are there whatever ran before."""
    monkeypatch.setenv("IMAGEKIT_REGISTRY_URL", "127.0.0.1:1")
    code, out, _ = cli("--config", cfg.source, "doctor", "--json")
    data = json.loads(out)
    assert code == 1 and data["ok"] is False and data["error"] is None
    assert [c["name"] for c in data["result"]["checks"] if not c["ok"]] == ["registry"]

from imagekit import config, doctor


def test_doctor_finds_everything_here(cfg, base_image):
    report = doctor.diagnose(cfg)
    assert report.ok, [c for c in report.checks if not c.ok]
    assert {c.name for c in report.checks} >= {"docker engine", "registry", "OS image", "wheel cache", "lock"}


def test_doctor_names_what_is_missing_and_what_to_do(cfg):
    broken = config.load(cfg.source, env={"IMAGEKIT_REGISTRY_URL": "127.0.0.1:1", "IMAGEKIT_OS_TAG": "absent:x",
                                          "IMAGEKIT_OS_IMAGE": "absent:y"})
    report = doctor.diagnose(broken)
    failed = {c.name: c for c in report.checks if not c.ok}
    assert not report.ok and set(failed) == {"registry", "OS image"}
    assert "not reachable" in failed["registry"].detail and "make dev-up" in failed["registry"].fix
    assert failed["OS image"].fix == "run `imagekit os`"

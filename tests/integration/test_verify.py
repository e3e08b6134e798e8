"""verify-compat against the real images, and against Ray images made wrong on purpose."""
import subprocess
import sys

import pytest

from imagekit import config, push, wheels
from imagekit.registry import Registry
from imagekit.verify import record, verify_compat


@pytest.fixture(scope="module")
def leftovers(engine):
    """Containers and networks that exist now: a run must leave nothing beyond them."""
    return lambda: ({c.id for c in engine.client.containers.list(all=True)},
                    {n.id for n in engine.client.networks.list()})


def variant(engine, base_ref, tmp_path, name, steps, files=()):
    """A deliberately misaligned image FROM the built one, built with the network off."""
    context = tmp_path / name
    context.mkdir()
    for f in files:
        (context / f.name).write_bytes(f.read_bytes())
    (context / "Dockerfile").write_text(f"ARG PARENT\nFROM ${{PARENT}}\nUSER root\n{steps}\nUSER ray\n")
    return engine.build(context, tags=[f"imagekit-test/{name}:latest"], buildargs={"PARENT": base_ref}, labels={})


def by_name(report):
    return {s.name: s for s in report.roundtrip.scenarios}


def test_aligned_images_pass_and_the_pair_is_recorded(cfg, engine, built, registry_process, leftovers):
    before = leftovers()
    cfg = config.load(cfg.source, env={"IMAGEKIT_REGISTRY_URL": registry_process.host})
    push.push(cfg, engine)
    report = verify_compat(cfg, engine)
    assert report.ok, (report.static.differences, report.roundtrip.scenarios)
    assert {s.name for s in report.roundtrip.scenarios} == {"iris", "cybersec", "custom-v1", "custom-v2"}
    assert all(s.max_probability_diff <= 1e-9 for s in report.roundtrip.scenarios)
    assert "stand-in" in report.roundtrip.s3_server or "MinIO" in report.roundtrip.s3_server
    reg = Registry.from_config(cfg)
    for subject in (report.notebook, report.ray):
        saved = record.read(reg, subject.repository, subject.digest)
        assert saved["passed"] and saved["ray"]["digest"] == report.ray.digest
        assert saved["notebook"]["digest"] == report.notebook.digest
    assert leftovers() == before  # containers and the network are gone


def test_a_ray_image_with_another_scikit_learn_minor_fails_for_that_reason(cfg, engine, built, tmp_path, leftovers):
    before = leftovers()
    ray = next(i for i in built.images if i.name == "ray")
    dl = tmp_path / "dl"
    platforms = [arg for p in wheels.pip_platforms(cfg.lock.platform) for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                    "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", *platforms,
                    "-d", str(dl), "scikit-learn==1.8.0"], check=True)
    wheel = next(dl.glob("scikit_learn-1.8.0-*.whl"))
    image = variant(engine, f"{ray.repository}:{ray.tags[0]}", tmp_path, "ray-sklearn-1-8",
                    f"COPY {wheel.name} /tmp/\nRUN pip install -q --no-index --no-deps /tmp/{wheel.name} && rm /tmp/*.whl",
                    files=[wheel])
    report = verify_compat(cfg, engine, ray=image)
    assert not report.ok and report.recorded == []
    assert "scikit-learn: notebook 1.9.1, ray 1.8.0, lock 1.9.1" in report.static.differences
    for name in ("iris", "cybersec", "custom-v1"):
        assert not by_name(report)[name].ok
        assert "InconsistentVersionWarning" in by_name(report)[name].reason
    assert leftovers() == before


def test_a_ray_image_without_the_private_package_fails_custom_v1(cfg, engine, built, tmp_path, leftovers):
    before = leftovers()
    ray = next(i for i in built.images if i.name == "ray")
    image = variant(engine, f"{ray.repository}:{ray.tags[0]}", tmp_path, "ray-no-custom", "RUN pip uninstall -q -y sunat-custom-models")
    report = verify_compat(cfg, engine, ray=image, scenarios=("iris", "custom-v1"))
    assert "sunat-custom-models: missing in ray (lock 1.0.0)" in report.static.differences
    assert by_name(report)["iris"].ok
    v1 = by_name(report)["custom-v1"]
    assert not v1.ok and "No module named 'sunat_models'" in v1.reason
    assert leftovers() == before


def test_ctrl_c_removes_every_container_and_the_network(cfg, engine, built, leftovers):
    before = leftovers()

    def interrupt(line):
        if line.startswith("starting Ray Serve"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        verify_compat(cfg, engine, scenarios=("iris",), on_line=interrupt)
    assert leftovers() == before


def test_a_missing_image_cannot_be_verified_exit_2(cfg, cli):
    code, _, err = cli("--config", cfg.source, "verify-compat", "--ray-image", "imagekit-test/absent:1")
    assert code == 2 and "imagekit-test/absent:1 is neither in the engine nor pullable" in err

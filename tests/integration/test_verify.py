"""verify-compat against the real images, and against Ray images made wrong on purpose."""
import json
import subprocess
import sys

import pytest

from imagekit import attest, config, lock, push, wheels
from imagekit.registry import Registry
from imagekit.verify import record, verify_compat


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


def test_aligned_images_pass_and_the_pair_is_attested(cfg, engine, built, registry_process, leftovers, keys):
    before = leftovers()
    key, pub = keys["trusted"]
    cfg = config.load(cfg.source, env={"IMAGEKIT_REGISTRY_URL": registry_process.host,
                                       "IMAGEKIT_TRUST_SIGNING_KEY": str(key), "IMAGEKIT_TRUST_PUBLIC_KEY": str(pub)})
    push.push(cfg, engine)
    report = verify_compat(cfg, engine)
    assert report.ok, (report.static.differences, report.roundtrip.scenarios)
    assert {s.name for s in report.roundtrip.scenarios} == {"iris", "cybersec", "custom-v1", "custom-v2"}
    assert all(s.max_probability_diff <= 1e-9 for s in report.roundtrip.scenarios)
    assert "stand-in" in report.roundtrip.s3_server or "MinIO" in report.roundtrip.s3_server
    reg, trusted = Registry.from_config(cfg), attest.trusted_key(cfg)
    for subject in (report.notebook, report.ray):
        (_, verdict), = record.verdicts(reg, subject.repository, subject.digest, trusted)
        assert verdict.images == {"notebook": report.notebook.digest, "ray": report.ray.digest}
        predicate = verdict.statement["predicate"]
        assert predicate["lock"] == lock.shared_lock(cfg).digest and predicate["python"] == "3.11.2"
        assert set(predicate["scenarios"]) == {"iris", "cybersec", "custom-v1", "custom-v2", "lifecycle"}
    assert report.lifecycle.ok and "labels equal" in report.lifecycle.detail
    assert len(report.recorded) == 2 and leftovers() == before  # containers and the network are gone


@pytest.mark.network  # downloads scikit-learn 1.8.0 from the index
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


def test_a_ray_image_without_the_private_package_fails_custom_v1_exit_1(cfg, engine, built, tmp_path, leftovers,
                                                                        cli):
    before = leftovers()
    ray = next(i for i in built.images if i.name == "ray")
    image = variant(engine, f"{ray.repository}:{ray.tags[0]}", tmp_path, "ray-no-custom", "RUN pip uninstall -q -y sunat-custom-models")
    code, out, _ = cli("--config", cfg.source, "verify-compat", "--ray-image", image, "--scenario", "iris",
                       "--scenario", "custom-v1", "--json")
    report = json.loads(out)["result"]  # JSON data all the way down
    assert code == 1 and report["ok"] is False and report["recorded"] == []
    assert "sunat-custom-models: missing in ray (lock 1.0.0)" in report["static"]["differences"]
    scenarios = {s["name"]: s for s in report["roundtrip"]["scenarios"]}
    assert scenarios["iris"]["ok"] is True
    assert scenarios["custom-v1"]["ok"] is False and "No module named 'sunat_models'" in scenarios["custom-v1"]["reason"]
    assert leftovers() == before


def test_a_model_changed_in_s3_after_publishing_is_refused_before_unpickling(cfg, engine, built, leftovers):
    before = leftovers()
    standin = built.image("s3").image_id

    def tamper(line):  # the notebooks have published; Ray Serve is about to load the models
        if line.startswith("starting Ray Serve"):
            s3 = engine.client.containers.list(filters={"ancestor": standin})[0]
            code, out = s3.exec_run(["python", "-c", TAMPER])
            assert code == 0, out

    report = verify_compat(cfg, engine, scenarios=("iris",), on_line=tamper)
    iris = by_name(report)["iris"]
    assert not report.ok and not iris.ok
    assert "sha256 mismatch" in iris.reason and "could not load in ray" in iris.reason
    assert leftovers() == before


TAMPER = """
import boto3
s3 = boto3.client("s3", endpoint_url="http://localhost:9000")
key = next(o["Key"] for o in s3.list_objects_v2(Bucket="cybersec-ml-models")["Contents"] if o["Key"].endswith("model.pkl"))
body = s3.get_object(Bucket="cybersec-ml-models", Key=key)["Body"].read()
s3.put_object(Bucket="cybersec-ml-models", Key=key, Body=body + b"tampered")
"""


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

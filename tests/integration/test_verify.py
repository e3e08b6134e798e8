"""verify-compat against the real images, and against Ray images made wrong on purpose."""
import base64
import hashlib
import json
import shutil
import xml.etree.ElementTree as ET

import boto3
import pytest
from helpers import ROOT, securesystemslib_verifies, sigstore_js, variant

import support

from imagekit import attest, config, containers, facts, lock, record
from imagekit.registry import Registry
from imagekit.verify import static
from imagekit.verify.compat import verify_compat
from imagekit.verify.stored import verify_stored


def by_name(report):
    return {s.name: s for s in report.roundtrip.scenarios}


def test_aligned_images_pass_and_the_pair_is_attested(own_project, engine, leftovers, keys, tmp_path):
    before = leftovers()
    cfg, _ = own_project
    pub = keys["trusted"][1]
    report = verify_compat(cfg, engine)
    assert report.ok, (report.static.differences, report.roundtrip.scenarios)
    assert {s.name for s in report.roundtrip.scenarios} == {"iris", "cybersec", "custom-v1", "custom-v2",
                                                            "housing-regressor", "cybersec-mlflow", "mlflow-pyfunc"}
    assert all(s.fingerprint == [] for s in report.roundtrip.scenarios)
    assert all(s.max_probability_diff <= 1e-9 for s in report.roundtrip.scenarios)
    mlflow = {s.name: s.mlflow for s in report.roundtrip.scenarios if s.mlflow}  # found through the tracking API
    assert {n: [(o.name, o.registered, o.same_predictions) for o in m] for n, m in mlflow.items()} == {
        "cybersec-mlflow": [("model", ["cybersec/1", "cybersec@champion"], True)],
        "mlflow-pyfunc": [("risk", [], True)]}
    assert report.roundtrip.mlflow_server.startswith("started ")
    assert "stand-in" in report.roundtrip.s3_server or "MinIO" in report.roundtrip.s3_server
    reg, trusted = Registry.from_config(cfg), attest.trusted_key(cfg)
    for subject in (report.notebook, report.ray):
        found = record.verdicts(reg, subject.repository, subject.digest, trusted)
        assert sorted(f.layout for f, _ in found) == [record.ATT, record.BUNDLE]  # cosign's two layouts
        (_, verdict), _ = found
        assert all(v.images == {"notebook": report.notebook.digest, "ray": report.ray.digest} for _, v in found)
        predicate = verdict.statement["predicate"]
        assert predicate["lock"] == lock.shared_lock(cfg).digest and predicate["python"] == "3.11.2"
        assert set(predicate["scenarios"]) == {"iris", "cybersec", "custom-v1", "custom-v2", "housing-regressor",
                                               "cybersec-mlflow", "mlflow-pyfunc", "lifecycle"}
    assert report.lifecycle.ok and "labels equal" in report.lifecycle.detail
    assert len(report.recorded) == 2 and leftovers() == before  # containers and the network are gone
    for subject in (report.notebook, report.ray):  # what other implementations make of what was written
        held = {f.layout: json.loads(reg.blob(subject.repository, f.layer["digest"]))
                for f in record.read(reg, subject.repository, subject.digest)}
        checked = sigstore_js(held[record.BUNDLE], pub, subject.digest, tmp_path)
        assert checked["ok"] and checked["predicate"]["images"][subject.role] == subject.digest, checked
        assert securesystemslib_verifies(held[record.ATT], pub)
        assert not securesystemslib_verifies(held[record.ATT], keys["other"][1])
        forged = {**held[record.BUNDLE], "dsseEnvelope": {**held[record.ATT], "payload": base64.b64encode(
            base64.b64decode(held[record.ATT]["payload"]).replace(b'"passed": true', b'"passed": false')).decode()}}
        assert forged != held[record.BUNDLE] and not sigstore_js(forged, pub, subject.digest, tmp_path)["ok"]


@pytest.mark.network  # downloads scikit-learn 1.8.0 from the index
def test_a_ray_image_with_another_scikit_learn_minor_fails_for_that_reason(cfg, engine, built, ray_sklearn_1_8,
                                                                           leftovers):
    before = leftovers()
    report = verify_compat(cfg, engine, ray=ray_sklearn_1_8, scenarios=("iris", "cybersec", "custom-v1",
                                                                      "cybersec-mlflow"))
    assert not report.ok and report.recorded == []
    assert "scikit-learn: notebook 1.9.1, ray 1.8.0, lock 1.9.1" in report.static.differences
    for name in ("iris", "cybersec", "custom-v1"):
        assert not by_name(report)[name].ok
        assert "InconsistentVersionWarning" in by_name(report)[name].reason
        assert "scikit-learn: trained with 1.9.1, serving with 1.8.0" in by_name(report)[name].fingerprint
    logged = by_name(report)["cybersec-mlflow"]  # where MLflow itself would only warn
    assert not logged.ok and logged.mlflow[0].registered == ["cybersec/1", "cybersec@champion"]
    assert "model 'model' (models:/m-" in logged.reason
    assert "scikit-learn: logged with 1.9.1, serving with 1.8.0" in logged.mlflow[0].differences
    assert leftovers() == before


def test_a_file_patched_under_the_same_version_fails_static_alignment_naming_it(cfg, engine, built, tmp_path):
    ray = next(i for i in built.images if i.name == "ray")
    patched = variant(engine, f"{ray.repository}:{ray.tags[0]}", tmp_path, "ray-sklearn-patched",
                      "RUN echo '# patched' >> /opt/venv/lib/python3.11/site-packages/sklearn/utils/validation.py")
    notebook = next(i for i in built.images if i.name == "notebook")
    report = static.compare(cfg, lock.shared_lock(cfg), facts.inspect(engine, notebook.image_id),
                            facts.inspect(engine, patched))
    assert report.differences == ["scikit-learn: sklearn/utils/validation.py in ray is changed since install (not what "
                                  "its RECORD lists, same version 1.9.1)"]


THRESHOLD = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {}, "outputs": [],
                        "source": ["import cloudpickle\n", "import numpy as np\n",
                                   "from imagekit_publish import publish\n", "\n",
                                   "class Threshold:  # defined here, pickled by value: numpy only\n",
                                   "    def __init__(self, w):\n", "        self.w = np.asarray(w)\n",
                                   "    def predict(self, X):\n",
                                   "        return (np.asarray(X, dtype=float) @ self.w > 0).astype(int)\n", "\n",
                                   "publish(Threshold([1.0, -1.0]), np.random.default_rng(0).normal(size=(8, 2)), "
                                   "dumps=cloudpickle.dumps)\n"]}],
             "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
             "nbformat": 4, "nbformat_minor": 5}
KEYS = {"AWS_ACCESS_KEY_ID": "imagekit-test", "AWS_SECRET_ACCESS_KEY": "s3-test-secret"}


@pytest.fixture(scope="module")
def s3_endpoint():
    """An S3 server of the test's own on the host (moto), as a platform's MinIO would be: on an
    address the containers reach through the engine's gateway."""
    with support.moto_server("0.0.0.0") as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def published(cfg, engine, built, s3_endpoint, tmp_path_factory):
    """A scenarios folder with one notebook copied and one added (no code change), verified against
    the S3 endpoint: what its models bucket then holds."""
    folder = tmp_path_factory.mktemp("scenarios")
    shutil.copy(ROOT / "examples" / "notebooks" / "iris.ipynb", folder)
    (folder / "threshold.ipynb").write_text(json.dumps(THRESHOLD))
    ecfg = config.load(cfg.source, env={"IMAGEKIT_VERIFY_NOTEBOOKS": str(folder), **KEYS})
    report = verify_compat(ecfg, engine, s3_endpoint=s3_endpoint, write_record=False, scenarios=("iris", "threshold"))
    return ecfg, report  # the lifecycle is not this fixture's subject: test_aligned_images_pass... runs it


def test_a_notebook_added_to_the_folder_is_verified_against_an_s3_endpoint(published, s3_endpoint, cfg):
    ecfg, report = published
    assert report.ok, report.roundtrip.scenarios
    assert [s.name for s in report.roundtrip.scenarios] == ["iris", "threshold"]
    assert report.roundtrip.s3_server == f"endpoint {s3_endpoint}"  # nothing was started for S3
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id=KEYS[
        "AWS_ACCESS_KEY_ID"], aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"])
    metas = {o["Key"].split("/")[0]: json.loads(client.get_object(Bucket="cybersec-ml-models", Key=o["Key"])["Body"]
                                                 .read())
             for o in client.list_objects_v2(Bucket="cybersec-ml-models")["Contents"] if o["Key"].endswith("meta.json")}
    iris, threshold = metas["iris"]["environment"], metas["threshold"]["environment"]
    assert {"numpy", "scikit-learn"} <= set(iris["distributions"])
    assert "scikit-learn" not in threshold["distributions"] and {"numpy", "cloudpickle"} <= set(threshold["distributions"])
    assert iris["python"] == "3.11.2" and iris["lock"] == lock.shared_lock(cfg).digest and iris["image"]
    assert metas["threshold"]["probabilities"] is None  # predict only


def test_stored_models_pass_in_the_aligned_ray_image_with_junit_and_report(published, s3_endpoint, cli, monkeypatch,
                                                                           tmp_path):
    ecfg, _ = published
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    code, out, err = cli("--config", ecfg.source, "verify-stored", "--s3-endpoint", s3_endpoint, "--json",
                         "--junit", str(tmp_path / "stored.xml"), "--report", str(tmp_path / "stored.json"))
    assert code == 0, err
    report = json.loads(out)
    assert json.loads((tmp_path / "stored.json").read_text()) == report
    assert sorted(s["name"].split("@")[0] for s in report["result"]["models"]) == ["iris", "threshold"]
    suite = ET.parse(tmp_path / "stored.xml").getroot()
    assert suite.get("tests") == "2" and suite.get("failures") == "0" and len(suite.findall("testcase")) == 2
    assert KEYS["AWS_SECRET_ACCESS_KEY"] not in out + err + (tmp_path / "stored.json").read_text()


@pytest.mark.network  # downloads scikit-learn 1.8.0 from the index
def test_stored_models_name_what_breaks_in_a_misaligned_ray_image(published, s3_endpoint, engine, ray_sklearn_1_8,
                                                                  leftovers):
    ecfg, _ = published
    before = leftovers()
    report = verify_stored(ecfg, engine, ray=ray_sklearn_1_8, s3_endpoint=s3_endpoint)
    models = {s.name.split("@")[0]: s for s in report.models}
    assert not report.ok and not models["iris"].ok
    assert "scikit-learn: trained with 1.9.1, serving with 1.8.0" in models["iris"].fingerprint
    assert models["threshold"].ok and models["threshold"].fingerprint == []  # it references no scikit-learn
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
            [s3] = engine.client.containers.list(filters={"ancestor": standin, "label": [
                f"{containers.RUN_LABEL}={containers.run_id()}", f"{containers.KIND_LABEL}=S3 server"]})
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
        if line.startswith("training iris"):  # the static check is most likely still asking the images
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        verify_compat(cfg, engine, scenarios=("iris",), on_line=interrupt)
    assert leftovers() == before


BROKEN = {**THRESHOLD, "cells": [{**THRESHOLD["cells"][0], "id": "c0", "source": ["import json"]},
                                  {**THRESHOLD["cells"][0], "id": "c1", "source": [
                                      "def f(d):\n", "    return d['missing']\n", "\n", "f(json.loads('{}'))"]}]}


def test_a_notebook_that_fails_is_named_with_its_error_and_the_cell_line_it_ran(engine, built, run):
    from imagekit.verify import roundtrip

    trainer = roundtrip.trainer(run, built.image("notebook").image_id, {}, {"broken": json.dumps(BROKEN).encode()})
    trained = roundtrip.train(trainer, "broken", store=None, bucket="", version="v")  # a real kernel's traceback
    assert trained.meta is None and trained.reason == (
        "notebook failed: KeyError: 'missing' (at Cell In[2], line 2, in f: return d['missing'])"), trained.reason


def test_a_missing_image_cannot_be_verified_exit_2(cfg, cli):
    code, _, err = cli("--config", cfg.source, "verify-compat", "--ray-image", "imagekit-test/absent:1")
    assert code == 2 and "imagekit-test/absent:1 is neither in the engine nor pullable" in err


def test_a_run_without_a_model_is_not_signed_and_one_short_of_the_required_scenarios_is_refused_at_the_gate(
        own_project, engine, keys, tmp_path):
    from imagekit import promote
    from imagekit.errors import CheckFailed

    cfg, env = own_project
    pub = keys["trusted"][1]
    empty, iris = tmp_path / "empty", tmp_path / "iris-only"
    empty.mkdir()
    iris.mkdir()
    shutil.copy(ROOT / "examples" / "notebooks" / "iris.ipynb", iris)
    nothing = verify_compat(config.load(cfg.source, env={**env, "IMAGEKIT_VERIFY_NOTEBOOKS": str(empty)}), engine)
    assert nothing.ok and nothing.lifecycle.ok and nothing.roundtrip.scenarios == []  # only the lifecycle ran
    assert nothing.recorded == [] and nothing.record_note.startswith("not recorded: no model scenario ran")
    reg = Registry.from_config(config.load(cfg.source, env=env))
    assert record.read(reg, nothing.ray.repository, nothing.ray.digest) == []  # nothing was attached
    ran = (iris / "iris.ipynb").read_bytes()

    def edit_mid_run(line):  # the notebook was copied into the container: changing it now changes nothing that ran
        if line.startswith("training iris"):
            (iris / "iris.ipynb").write_bytes(ran.replace(b"iris", b"iris (edited after it was copied)", 1))
    short = verify_compat(config.load(cfg.source, env={**env, "IMAGEKIT_VERIFY_NOTEBOOKS": str(iris)}), engine,
                          on_line=edit_mid_run)
    assert short.ok and len(short.recorded) == 2, (  # signed: it passed what it ran
        short.static.differences, short.roundtrip.scenarios, short.lifecycle)
    (found, verdict), _ = record.verdicts(reg, short.ray.repository, short.ray.digest, attest.load_public(str(pub)))
    predicate = verdict.statement["predicate"]
    assert set(predicate["scenarios"]) == {"iris", "lifecycle"}
    assert predicate["counts"] == {"round_trip": 1, "lifecycle": 1}
    assert predicate["scenarios"]["iris"]["notebook_sha256"] == hashlib.sha256(ran).hexdigest()  # what ran
    assert hashlib.sha256((iris / "iris.ipynb").read_bytes()).hexdigest() != hashlib.sha256(ran).hexdigest()
    with pytest.raises(CheckFailed) as e:  # the gate requires every notebook of the committed folder
        promote.promote(config.load(cfg.source, env=env), [], all_images=True, to="test")
    for missing in ("cybersec", "custom-v1", "custom-v2", "housing-regressor"):
        assert f"does not cover the required scenario {missing}" in str(e.value)

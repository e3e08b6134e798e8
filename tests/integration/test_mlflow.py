"""MLflow's client in both images, from the lock: a model saved in the notebook image with the plain
MLflow API (the cybersec pipeline, category-encoders' TargetEncoder, cloudpickle) loads with
mlflow.pyfunc in the Ray image and predicts its input example as the notebook did; the skops format
mlflow.sklearn defaults to is not what these images can save. And through a real tracking server
(images/mlflow, SQLite, artifacts proxied to the S3 stand-in): logged and registered with an alias
in the notebook image, loaded by `models:/NAME@ALIAS` in the Ray image.

Then the team's own MLflow as a port-forward shows it (a tracking server on this machine's loopback,
PostgreSQL as its backend store): an MLflow scenario of verify-compat logs into it, and verify-stored
checks its registry in a candidate Ray image against a baseline, naming what breaks."""
import io
import json
import secrets
import tarfile

import requests

import pytest

from support import PG, postgres_image

from imagekit import config, containers, inimage, lock, services, wait
from imagekit.engine import Engine
from imagekit.errors import PreconditionError, ToolError
from imagekit.verify import s3store, tracking
from imagekit.verify.compat import verify_compat
from imagekit.verify.mlflowstore import verify_mlflow

SAVE = r"""
import json, sys
import mlflow.sklearn, numpy as np, pandas as pd
from category_encoders import TargetEncoder
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
rng = np.random.default_rng(7)
X = pd.DataFrame({"proto": rng.choice(["tcp", "udp", "icmp"], 300), "bytes": rng.integers(0, 10_000, 300)})
y = ((X.proto == "tcp") & (X.bytes > 5_000)).astype(int)
pipe = make_pipeline(TargetEncoder(cols=["proto"]), LogisticRegression()).fit(X, y)
kwargs = {"serialization_format": sys.argv[1]} if len(sys.argv) > 1 else {}
mlflow.sklearn.save_model(pipe, "/tmp/model", input_example=X.head(8), **kwargs)
print(json.dumps({"labels": pipe.predict(X.head(8)).tolist(), "mlflow": mlflow.__version__}))
"""
LOAD = r"""
import json
import mlflow.pyfunc
from mlflow.models import Model
model = mlflow.pyfunc.load_model("/tmp/model")
example = Model.load("/tmp/model").load_input_example("/tmp/model")
print(json.dumps({"labels": model.predict(example).tolist(), "mlflow": mlflow.__version__}))
"""


@pytest.fixture(scope="module")
def refs(built):
    return {i.name: i.image_id for i in built.images}


def save(engine: Engine, notebook: str, *args: str) -> tuple[dict, bytes]:
    """Run SAVE in the notebook image; its printed result and the saved model folder as a tar stream."""
    with containers.Run(engine, "test", network=False) as run:
        c = run.start(containers.Container(notebook, ["python", "-c", SAVE, *args], network_mode="none"))
        out = c.wait(300)
        return json.loads(out.strip().splitlines()[-1]), b"".join(c.archive("/tmp/model"))


def test_both_images_have_the_locked_mlflow_client(cfg, shared_lock, refs, engine):
    pinned = lock.load_views(cfg, shared_lock).versions("base")["mlflow-skinny"]
    for name in ("notebook", "ray"):
        assert containers.run(engine, refs[name], ["python", "-c", "import mlflow; print(mlflow.__version__)"]).strip() \
            == pinned


def test_a_model_saved_in_the_notebook_loads_with_pyfunc_in_ray_and_predicts_the_same(engine, refs, tmp_path):
    trained, folder = save(engine, refs["notebook"], "cloudpickle")
    with tarfile.open(fileobj=io.BytesIO(folder)) as tar:
        tar.extractall(tmp_path, filter="data")
    saved = tmp_path / "model"
    assert {"MLmodel", "requirements.txt", "python_env.yaml", "input_example.json"} <= {p.name for p in saved.iterdir()}
    assert "serialization_format: cloudpickle" in (saved / "MLmodel").read_text()
    served = json.loads(containers.run(engine, refs["ray"], ["python", "-c", LOAD], inputs={"/tmp/model": saved})
                        .strip().splitlines()[-1])
    assert served == trained and len(trained["labels"]) == 8 and set(trained["labels"]) == {0, 1}


def test_the_default_skops_format_is_refused_in_the_notebook_image(engine, refs):
    """mlflow.sklearn defaults to skops since MLflow 3.14; the images have no skops (mlflow-skinny)."""
    with pytest.raises(ToolError) as e:
        save(engine, refs["notebook"])
    assert "No module named 'skops'" in str(e.value)


TRAIN = SAVE.split("kwargs =")[0]
LOG = TRAIN + r"""
import mlflow
mlflow.set_experiment("cybersec")
with mlflow.start_run():
    info = mlflow.sklearn.log_model(pipe, name="model", input_example=X.head(8), serialization_format="cloudpickle",
                                    registered_model_name="cybersec")
mlflow.MlflowClient().set_registered_model_alias("cybersec", "champion", info.registered_model_version)
print(json.dumps({"labels": pipe.predict(X.head(8)).tolist(), "version": info.registered_model_version}))
"""
LOAD_URI = r"""
import json
import mlflow.artifacts, mlflow.pyfunc
from mlflow.models import Model
uri = "models:/cybersec@champion"
model = mlflow.pyfunc.load_model(uri)
local = mlflow.artifacts.download_artifacts(uri)
example = Model.load(local).load_input_example(local)
print(json.dumps({"labels": model.predict(example).tolist()}))
"""


def run_on(run: containers.Run, image: str, code: str, env: dict) -> dict:
    """``python -c code`` in ``image`` in the run (on its network); the JSON it printed last."""
    out = run.start(containers.Container(image, ["python", "-c", code], env=env)).wait(300)
    return json.loads(out.strip().splitlines()[-1])


def s3_of(run: containers.Run, cfg, engine) -> s3store.Store:
    """The S3 server verify-compat would start, started in ``run``."""
    quiet = lambda line: None  # noqa: E731
    return s3store.open_store(run, s3store.store_for(cfg, engine, None, quiet), quiet)


def test_logged_and_registered_through_a_tracking_server_it_loads_by_alias_in_ray(cfg, engine, refs, leftovers):
    before = leftovers()
    with containers.Run(engine, "test") as run:
        store = s3_of(run, cfg, engine)
        server = tracking.start_server(run, refs["mlflow"], store)
        env = {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}  # proxied artifacts: the clients have no S3 keys
        logged = run_on(run, refs["notebook"], LOG, env)
        _, processes = server.exec(["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"])
        assert "uvicorn" in processes and "huey" not in processes, processes  # no job runner: see its Dockerfile
        served = run_on(run, refs["ray"], LOAD_URI, env)
        assert str(logged["version"]) == "1" and served["labels"] == logged["labels"]
        keys = [o["Key"] for o in store.client.list_objects_v2(Bucket="mlflow-artifacts").get("Contents", [])]
        assert any(k.endswith("/MLmodel") for k in keys), keys
    assert leftovers() == before


REGISTER = TRAIN + r"""
import mlflow
mlflow.set_experiment("registry")
def log(name, **kwargs):
    with mlflow.start_run():
        return mlflow.sklearn.log_model(pipe, name="model", serialization_format="cloudpickle",
                                        registered_model_name=name, **kwargs).registered_model_version
mlflow.MlflowClient().set_registered_model_alias("intrusion", "champion", log("intrusion", input_example=X.head(8)))
log("no-example")
log("absent", input_example=X.head(8), extra_pip_requirements=["imagekit-absent==1.0"])
print(json.dumps({}))
"""
SKOPS = r"""
import json, mlflow, mlflow.sklearn, numpy as np
from sklearn.linear_model import LogisticRegression
X = np.random.default_rng(0).normal(size=(40, 2))
mlflow.set_experiment("registry")
with mlflow.start_run():  # the default format: skops, which this (full mlflow) image has
    mlflow.sklearn.log_model(LogisticRegression().fit(X, X[:, 0] > 0), name="model", input_example=X[:4],
                             registered_model_name="skops-model")
print(json.dumps({}))
"""


@pytest.fixture(scope="module")
def team_mlflow(cfg, engine, refs, base_image, tmp_path_factory):
    """The team's MLflow: a tracking server reached on this machine's loopback (as through `kubectl
    port-forward`), PostgreSQL (Debian's) as its backend store, artifacts proxied to S3; four models
    registered in it: intrusion (the cybersec pipeline, alias champion), no-example (no input example), absent (its
    requirements.txt names a distribution no image has), skops-model (skops format, from a full mlflow)."""
    password = secrets.token_hex(12)
    with containers.Run(engine, "test-mlflow") as run:
        store = s3_of(run, cfg, engine)
        pg = run.start(containers.Container(postgres_image(engine, base_image, tmp_path_factory.mktemp("pg")),
                                            alias="postgres", env={"POSTGRES_PASSWORD": password}))
        wait.until("PostgreSQL", lambda: pg.exec([f"{PG}/pg_isready", "-h", "127.0.0.1", "-q"])[0] == 0, 60,
                   gone=pg.exited)
        server = tracking.start_server(run, refs["mlflow"], store, {
            "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg://postgres:{password}@postgres:5432/postgres"})
        env = {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}
        run_on(run, refs["notebook"], REGISTER, env)
        run_on(run, refs["mlflow"], SKOPS, env)
        yield server.url(5000), pg


def test_the_registry_is_kept_in_postgresql(team_mlflow):
    _, pg = team_mlflow
    code, out = pg.exec([f"{PG}/psql", "-U", "postgres", "-tAc", "select name from registered_models order by 1"])
    assert code == 0 and {"absent", "intrusion", "no-example", "skops-model"} <= set(out.split()), out


def test_verify_stored_checks_every_registered_version_against_the_baseline(cfg, cli, refs, team_mlflow, tmp_path):
    url, _ = team_mlflow
    code, out, err = cli("--config", cfg.source, "verify-stored", "--mlflow-uri", url, "--baseline-image",
                         refs["ray"], "--json", "--junit", str(tmp_path / "mlflow.xml"))
    report = json.loads(out)["result"]
    assert code == 1 and report["ok"] is False, err
    models = {m["candidate"]["name"]: m for m in report["models"]}
    assert {"intrusion/1", "no-example/1", "absent/1", "skops-model/1"} <= set(models)
    champion = models["intrusion/1"]
    assert champion["ok"] and champion["aliases"] == ["champion"] and champion["candidate"]["same_predictions"]
    assert champion["candidate"]["differences"] == [] and champion["baseline_error"] == ""
    blind = models["no-example/1"]
    assert blind["ok"] and blind["note"] == "checked for loading only: logged without an input example"
    absent = models["absent/1"]["candidate"]
    assert not models["absent/1"]["ok"] and absent["loaded"]
    assert absent["differences"] == ["imagekit-absent: logged with 1.0, serving with nothing (not installed)"]
    skops = models["skops-model/1"]["candidate"]
    assert not skops["loaded"] and "No module named 'skops'" in skops["reason"]
    assert any(d.startswith("skops: logged with ") and d.endswith("serving with nothing (not installed)")
               for d in skops["differences"])
    assert 'failures="2"' in (tmp_path / "mlflow.xml").read_text()


@pytest.mark.network  # downloads scikit-learn 1.8.0 from the index
def test_an_alias_in_a_ray_image_with_another_scikit_learn_names_the_requirement(cfg, engine, refs, team_mlflow,
                                                                                 ray_sklearn_1_8):
    url, _ = team_mlflow
    report = verify_mlflow(cfg, engine, ray=ray_sklearn_1_8, baseline=refs["ray"], mlflow_uri=url,
                           models=("intrusion@champion",))
    [model] = report.models
    assert not report.ok and model.candidate.name == "intrusion/1"
    assert "scikit-learn: logged with 1.9.1, serving with 1.8.0" in model.candidate.differences
    assert model.candidate.uri == "models:/intrusion/1" and model.candidate.reason


def test_a_tracking_server_down_or_wrong_is_exit_2(cfg, cli, engine, refs, team_mlflow, leftovers):
    url, _ = team_mlflow
    code, out, _ = cli("--config", cfg.source, "verify-stored", "--mlflow-uri", "http://127.0.0.1:9", "--json")
    error = json.loads(out)["error"]
    assert code == 2 and "does not answer" in error["message"] and "port-forward" in error["hint"]
    before = leftovers()  # verify-compat never logs into the team's server: asked to, it refuses before any work
    code, out, _ = cli("--config", cfg.source, "verify-compat", "--mlflow-uri", url, "--scenario",
                       "cybersec-mlflow", "--no-record", "--json")
    error = json.loads(out)["error"]
    assert code == 2 and "never the team's" in error["message"] and "verify-stored --mlflow-uri" in error["hint"]
    assert leftovers() == before
    code, out, _ = cli("--config", cfg.source, "verify-stored", "--mlflow-uri", f"{url}/health/nothing-here", "--json")
    assert code == 2 and "does not answer as an MLflow tracking server" in json.loads(out)["error"]["message"]
    code, out, _ = cli("--config", cfg.source, "verify-stored", "--mlflow-uri", "mlflow.example.org", "--json")
    assert code == 2 and "is not an MLflow tracking server's URL" in json.loads(out)["error"]["message"]
    code, out, _ = cli("--config", cfg.source, "verify-stored", "--mlflow-uri", url, "--model", "a@b@c", "--json")
    assert code == 2 and "NAME, NAME@ALIAS or NAME/VERSION" in json.loads(out)["error"]["message"]
    with pytest.raises(PreconditionError, match="no-such-model"):
        verify_mlflow(cfg, engine, baseline=refs["ray"], mlflow_uri=url, models=("no-such-model",))


def registry_of(url: str) -> dict[str, dict]:
    """Every registered model of the tracking server at ``url``: name -> {alias: version}."""
    found = requests.get(f"{url}/api/2.0/mlflow/registered-models/search", timeout=10).json()
    return {m["name"]: {a["alias"]: a["version"] for a in m.get("aliases", [])}
            for m in found.get("registered_models", [])}


def test_a_verification_leaves_the_teams_registry_as_it_was(cfg, engine, built, team_mlflow, leftovers):
    """The team's MLflow is verify.mlflow_uri (what verify-stored reads): verify-compat's MLflow scenarios
    log into a server of the run's own, so the team's `champion` names what it named and nothing is
    registered there, while the scenario's own registration and alias are judged as before."""
    url, _ = team_mlflow
    before, registry = leftovers(), registry_of(url)
    assert registry["intrusion"] == {"champion": "1"}
    tcfg = config.load(cfg.source, env={"IMAGEKIT_VERIFY_MLFLOW_URI": url})
    report = verify_compat(tcfg, engine, scenarios=("cybersec-mlflow",), write_record=False)
    assert report.ok, [s.reason for s in report.roundtrip.scenarios]
    [scenario] = report.roundtrip.scenarios
    [model] = scenario.mlflow
    assert model.registered == ["cybersec/1", "cybersec@champion"] and model.same_predictions
    assert report.roundtrip.mlflow_server.startswith("started ")
    assert registry_of(url) == registry and leftovers() == before


def test_mlflow_clients_in_the_containers_send_no_telemetry(engine, built):
    """MLflow 3 starts a telemetry client in every process that imports it (its session variable raced once:
    a notebook failed with KeyError: '_MLFLOW_TELEMETRY_SESSION_ID'); verify's clients have it off."""
    with containers.Run(engine, "test-telemetry") as run:
        c = run.start(services.Idle(built.image("notebook").image_id, kind="notebook", env=tracking.CLIENT))
        code, out = c.exec(c.python("-c", "import mlflow; from mlflow.telemetry import get_telemetry_client; "
                                          "from mlflow.telemetry.utils import is_telemetry_disabled; "
                                          "print('telemetry', is_telemetry_disabled(), get_telemetry_client())"))
    assert code == 0 and out.strip().splitlines()[-1] == "telemetry True None", out


def test_each_notebook_run_finds_only_what_it_logged_on_a_shared_server(cfg, engine, built, team_mlflow):
    """Two notebooks logging into one tracking server at once, and a third client logging meanwhile:
    each run's models are found by its own tag (MLFLOW_RUN_CONTEXT), never by a time window."""
    import threading

    from imagekit.verify import roundtrip
    from imagekit.verify.policy import notebooks

    url, _ = team_mlflow
    folder = cfg.path(cfg.verify.notebooks)
    assert "mlflow-pyfunc" in notebooks(folder)
    found = {}
    with containers.Run(engine, "test-shared-mlflow") as run:
        inside = s3store.relay(run, url, "the team's MLflow", lambda line: None)
        env = {"MLFLOW_TRACKING_URI": inside, **tracking.CLIENT}
        trainers = [roundtrip.trainer(run, built.image("notebook").image_id, env,
                                      roundtrip.copied(folder, ["mlflow-pyfunc"])) for _ in range(2)]

        def execute(n, c):
            code, out = c.exec(c.python("-c", inimage.EXECUTE, f"{roundtrip.NOTEBOOKS}/mlflow-pyfunc.ipynb",
                                        path=roundtrip.NOTEBOOKS), env=tracking.run_context(f"run-{n}"))
            assert code == 0, out[-2000:]
        threads = [threading.Thread(target=execute, args=(n, c)) for n, c in enumerate(trainers)]
        for th in threads:
            th.start()
        run_on(run, built.image("notebook").image_id, LOG.replace("cybersec", "bystander"), {"MLFLOW_TRACKING_URI": inside})
        for th in threads:
            th.join(600)
        for n, c in enumerate(trainers):
            found[n] = roundtrip.logged(c, f"run-{n}")
    assert [len(found[0]), len(found[1])] == [1, 1] and found[0][0]["uri"] != found[1][0]["uri"]
    assert all(m["name"] == "risk" and m["registered"] == [] for m in found[0] + found[1])  # not the bystander's


def test_a_team_ray_image_checks_the_registry_as_it_is(cfg, engine, refs, team_mlflow, vendor):
    """The Ray stand-in (conda prefix, no mlflowcheck of its own): imagekit's checker is copied in."""
    url, _ = team_mlflow
    report = verify_mlflow(cfg, engine, ray=vendor["ray"], baseline=refs["ray"], mlflow_uri=url,
                           models=("intrusion@champion",))
    [model] = report.models
    assert report.ok and model.candidate.name == "intrusion/1" and model.candidate.differences == []

"""MLflow's client in both images, from the lock: a model saved in the notebook image with the plain
MLflow API (the cybersec pipeline, category-encoders' TargetEncoder, cloudpickle) loads with
mlflow.pyfunc in the Ray image and predicts its input example as the notebook did; the skops format
mlflow.sklearn defaults to is not what these images can save. And through a real tracking server
(images/mlflow, SQLite, artifacts proxied to the S3 stand-in): logged and registered with an alias
in the notebook image, loaded by `models:/NAME@ALIAS` in the Ray image."""
import io
import json
import tarfile

import pytest
import requests

from testcontainers.core.container import DockerContainer

from imagekit import lock
from imagekit.engine import Engine
from imagekit.errors import EngineError
from imagekit.verify import s3_server, s3store

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
    with engine.container(notebook, ["python", "-c", SAVE, *args]) as c:
        out = engine.wait(c, notebook, ["python", "-c", "SAVE"], 300)
        return json.loads(out.strip().splitlines()[-1]), b"".join(Engine.get(c, "/tmp/model"))


def test_both_images_have_the_locked_mlflow_client(cfg, shared_lock, refs, engine):
    pinned = lock.load_views(cfg, shared_lock).versions("base")["mlflow-skinny"]
    for name in ("notebook", "ray"):
        assert engine.run(refs[name], ["python", "-c", "import mlflow; print(mlflow.__version__)"]).strip() == pinned


def test_a_model_saved_in_the_notebook_loads_with_pyfunc_in_ray_and_predicts_the_same(engine, refs, tmp_path):
    trained, folder = save(engine, refs["notebook"], "cloudpickle")
    with tarfile.open(fileobj=io.BytesIO(folder)) as tar:
        tar.extractall(tmp_path, filter="data")
    saved = tmp_path / "model"
    assert {"MLmodel", "requirements.txt", "python_env.yaml", "input_example.json"} <= {p.name for p in saved.iterdir()}
    assert "serialization_format: cloudpickle" in (saved / "MLmodel").read_text()
    served = json.loads(engine.run(refs["ray"], ["python", "-c", LOAD], inputs={"/tmp/model": saved}).strip()
                        .splitlines()[-1])
    assert served == trained and len(trained["labels"]) == 8 and set(trained["labels"]) == {0, 1}


def test_the_default_skops_format_is_refused_in_the_notebook_image(engine, refs):
    """mlflow.sklearn defaults to skops since MLflow 3.14; the images have no skops (mlflow-skinny)."""
    with pytest.raises(EngineError) as e:
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


def run_on(engine: Engine, image: str, code: str, network: str, env: dict) -> dict:
    """``python -c code`` in ``image`` on ``network``; the JSON it printed last."""
    c = engine.client.containers.create(image, ["python", "-c", code], network=network, environment=env)
    try:
        out = engine.wait(c, image, ["python", "-c", "..."], 300)
    finally:
        c.remove(force=True)
    return json.loads(out.strip().splitlines()[-1])


def test_logged_and_registered_through_a_tracking_server_it_loads_by_alias_in_ray(cfg, engine, refs, leftovers):
    before = leftovers()
    with s3store.on_network() as (stack, network):
        store = s3store.open_store(stack, s3_server(cfg, engine, lambda line: None), network,
                                   lambda line: None)
        store.ensure("mlflow-artifacts")
        server = DockerContainer(refs["mlflow"]).with_network(network).with_network_aliases("mlflow") \
            .with_exposed_ports(5000).with_env("MLFLOW_S3_ENDPOINT_URL", store.inside)
        for k, v in store.keys.items():
            server.with_env(k, v)
        stack.enter_context(server)
        health = f"http://{server.get_container_host_ip()}:{server.get_exposed_port(5000)}/health"
        s3store.until(lambda: requests.get(health, timeout=2).ok or None, 90, "the tracking server did not answer",
                      logs=lambda: server.get_logs()[1].decode()[-2000:])
        env = {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}  # proxied artifacts: the clients have no S3 keys
        logged = run_on(engine, refs["notebook"], LOG, network.name, env)
        served = run_on(engine, refs["ray"], LOAD_URI, network.name, env)
        assert str(logged["version"]) == "1" and served["labels"] == logged["labels"]
        keys = [o["Key"] for o in store.client.list_objects_v2(Bucket="mlflow-artifacts").get("Contents", [])]
        assert any(k.endswith("/MLmodel") for k in keys), keys
    assert leftovers() == before

"""MLflow's client in both images, from the lock: a model saved in the notebook image with the plain
MLflow API (the cybersec pipeline, category-encoders' TargetEncoder, cloudpickle) loads with
mlflow.pyfunc in the Ray image and predicts its input example as the notebook did; the skops format
mlflow.sklearn defaults to is not what these images can save."""
import io
import json
import tarfile

import pytest

from imagekit import lock
from imagekit.engine import Engine
from imagekit.errors import EngineError

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

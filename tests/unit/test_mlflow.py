"""MLflow's parts fed facts that differ (no Docker): a logged model's requirements against an
environment, a served answer against the notebook's or the baseline's, the tracking server's
address and what answers there (a real HTTP server on the loopback)."""
import importlib.util
import http.server
import json
import platform
import threading
from importlib.metadata import version

import pytest
from helpers import ROOT

from imagekit import redact
from imagekit.errors import PreconditionError, UsageError
from imagekit.verify import mlflowstore, tracking

spec = importlib.util.spec_from_file_location("mlflowcheck", ROOT / "images" / "ray" / "serving" / "mlflowcheck.py")
mlflowcheck = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mlflowcheck)  # in-image code; what it compares runs on this host's distributions too


def model(tmp_path, requirements: str, python: str = platform.python_version()):
    (tmp_path / "requirements.txt").write_text(requirements)
    (tmp_path / "python_env.yaml").write_text(f"python: {python}\nbuild_dependencies:\n- pip\ndependencies:\n"
                                              f"- -r requirements.txt\n")
    return tmp_path


def test_a_model_logged_with_this_environment_has_no_differences(tmp_path):
    here = f"packaging=={version('packaging')}\npyyaml>=5\n# a comment\n-r other.txt\n"
    assert mlflowcheck.differences(model(tmp_path, here + 'absent-on-py2==1.0 ; python_version < "3"\n')) == []


def test_every_difference_is_named(tmp_path):
    found = mlflowcheck.differences(model(tmp_path, "packaging==20.1\nimagekit-absent==1.0\npyyaml<1\nnot a req!\n",
                                          python="3.10.4"))
    assert found == [f"python: logged with 3.10.4, serving with {platform.python_version()}",
                     f"packaging: logged with 20.1, serving with {version('packaging')}",
                     "imagekit-absent: logged with 1.0, serving with nothing (not installed)",
                     f"pyyaml: logged with <1, serving with {version('pyyaml')}",
                     "requirements.txt: 'not a req!' is not a requirement"]


def test_a_model_folder_without_the_files_is_compared_with_nothing(tmp_path):
    assert mlflowcheck.differences(tmp_path) == []


def outcome(expected, served, **kw):
    args = {"loaded": True, "example": True, "error": "", "expected": expected, "served": served}
    return mlflowstore.judge("cybersec/1", "models:/cybersec/1", ["cybersec@champion"], kw.pop("differences", []),
                             **{**args, **kw})


def test_the_same_predictions_pass_and_different_ones_are_named():
    assert outcome(["attack", "normal"], {"predictions": ["attack", "normal"]}).ok
    bad = outcome(["attack", "normal"], {"predictions": ["attack", "attack"]}, against="the baseline")
    assert not bad.ok and bad.reason == "labels differ at probe rows [1] (the baseline vs ray)"
    close = outcome([0.5, 1.25], {"predictions": [0.5, 1.25 + 1e-6]})
    assert not close.ok and "predictions differ by up to 1e-06" in close.reason


def test_requirement_differences_fail_even_when_it_predicts_the_same():
    o = outcome([1], {"predictions": [1]}, differences=["scikit-learn: logged with 1.9.1, serving with 1.8.0"])
    assert not o.ok and o.same_predictions
    assert o.reason == ("logged for another environment than the Ray image's: "
                        "scikit-learn: logged with 1.9.1, serving with 1.8.0")


def test_a_model_without_an_input_example_is_checked_for_loading_only():
    o = outcome(None, None, example=False)
    assert o.ok and mlflowstore.note_of(o) == "checked for loading only: logged without an input example"
    failed = outcome(None, None, loaded=False, example=False, error="could not load in ray: No module named 'skops'")
    assert not failed.ok and failed.reason.endswith("'skops'") and mlflowstore.note_of(failed) == ""


def notebook(tmp_path, *cells):
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": kind, "source": text} for kind, text in cells]}))
    return path


def test_a_scenario_that_imports_mlflow_is_given_a_tracking_server(tmp_path):
    assert tracking.uses_mlflow(notebook(tmp_path, ("code", ["import numpy\n", "import mlflow.sklearn\n"])))
    assert tracking.uses_mlflow(notebook(tmp_path, ("code", "from mlflow.models import infer_signature")))
    assert not tracking.uses_mlflow(notebook(tmp_path, ("markdown", "import mlflow"),
                                                ("code", "from imagekit_publish import publish  # no mlflowx")))


def test_a_tracking_url_is_checked_and_its_credentials_never_shown():
    with pytest.raises(UsageError, match="is not an MLflow tracking server's URL"):
        tracking.tracking("mlflow.example.org:5000", {})
    t = tracking.tracking("https://mlflow.example.org/", {"MLFLOW_TRACKING_USERNAME": "ci",
                                                              "MLFLOW_TRACKING_PASSWORD": "pw-never-shown"})
    assert t.url == "https://mlflow.example.org" and "pw-never-shown" not in repr(t)
    assert "pw-never-shown" not in redact.text("login failed for ci:pw-never-shown")


@pytest.fixture
def answering():
    """A real HTTP server on the loopback answering every GET with what the test sets."""
    state = {"status": 200, "body": b"{}", "seen": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["seen"].append(self.headers.get("Authorization"))
            self.send_response(state["status"])
            self.end_headers()
            self.wfile.write(state["body"])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()


def test_what_answers_is_told_apart_before_any_work(answering):
    url, state = answering
    state["body"] = json.dumps({"experiments": [{"name": "Default"}]}).encode()
    tracking.preflight(tracking.tracking(url, {"MLFLOW_TRACKING_TOKEN": "tok"}))
    assert state["seen"] == ["Bearer tok"]
    state.update(status=401, body=b"")
    with pytest.raises(PreconditionError, match=r"refused the request \(HTTP 401\)") as e:
        tracking.preflight(tracking.tracking(url, {}))
    assert "MLFLOW_TRACKING_USERNAME" in e.value.hint
    state.update(status=404, body=b"<html>not here</html>")
    with pytest.raises(PreconditionError, match="does not answer as an MLflow tracking server"):
        tracking.preflight(tracking.tracking(url, {}))
    with pytest.raises(PreconditionError, match="does not answer: ConnectionError"):
        tracking.preflight(tracking.tracking("http://127.0.0.1:9", {}))

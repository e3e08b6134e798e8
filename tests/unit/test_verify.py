"""The comparisons verify-compat makes, fed facts that differ (no Docker)."""
import math

import pytest
from helpers import write_project
from hypothesis import given
from hypothesis import strategies as st

from imagekit import config, lock, proc
from imagekit.facts import ImageFacts
from imagekit.errors import PreconditionError
from imagekit.verify import policy, roundtrip, static
from imagekit.verify.compare import TOLERANCE, compare

EXPECTED = {"labels": [0, 1, 1], "probabilities": [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]]}


def test_identical_predictions_pass():
    assert compare(EXPECTED, {**EXPECTED}) == (True, "", 0.0)


@pytest.mark.parametrize("served, reason", [
    ({"labels": [0, 1, 0], "probabilities": EXPECTED["probabilities"]}, "labels differ at probe rows [2]"),
    ({"labels": [0, 1, 1], "probabilities": [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6 + 2e-9]]}, "differ by up to 2e-09"),
    ({"labels": [0, 1, 1], "probabilities": [[0.9], [0.2], [0.4]]}, "different shape"),
    ({"labels": [0, 1, 1]}, "probabilities from the notebook only"),
])
def test_differences_fail_with_the_reason(served, reason):
    ok, why, _ = compare(EXPECTED, served)
    assert not ok and reason in why


def test_within_tolerance_passes():
    served = {"labels": [0, 1, 1], "probabilities": [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6 + 5e-10]]}
    ok, _, diff = compare(EXPECTED, served)
    assert ok and 4e-10 < diff < 6e-10


@pytest.fixture(scope="module")
def locked(tmp_path_factory, index):
    """A project and its lock, made once for the module: its tests only read them."""
    path = write_project(tmp_path_factory.mktemp("locked"), requirements={"base": "learn\n", "ray": "extra-tool\n",
                                                                           "notebook": "soupy\n"})
    cfg = config.load(path, env={"IMAGEKIT_LOCK_INDEX_URL": index})
    lock.lock(cfg)
    return cfg, lock.read(lock.lock_path(cfg))


def facts(name, python="3.11.2", **changes):
    packages = {"learn": "1.7.0", "numbers": "1.1", **({"soupy": "1.0"} if name == "notebook" else {"extra-tool": "0.1"})}
    packages.update(changes)
    return ImageFacts(ref=f"{name}:test", name=name, python=python,
                             packages={k: v for k, v in packages.items() if v is not None})


def test_static_alignment_passes_when_each_image_holds_its_view(locked):
    cfg, lk = locked
    assert static.compare(cfg, lk, facts("notebook"), facts("ray")).differences == []


def test_static_alignment_names_every_difference(locked):
    cfg, lk = locked
    report = static.compare(cfg, lk, facts("notebook"),
                            facts("ray", python="3.11.4", learn="1.6.1", **{"extra-tool": None, "rogue": "2.0"}))
    assert not report.ok
    assert set(report.differences) == {
        "python: ray has 3.11.4, the lock targets 3.11.2",
        "python: notebook 3.11.2, ray 3.11.4: a driver that joins the Ray cluster must match Python to the patch "
        "(Ray Client: the minor); take both images at the same Python patch",
        "learn: ray has 1.6.1, lock 1.7.0",
        "learn: notebook 1.7.0, ray 1.6.1, lock 1.7.0",
        "extra-tool: missing in ray (lock 0.1)",
        "rogue: 2.0 in ray is not in its lock view",
    }


def team(name, python="3.11.2", blas=("openblas 0.3.27",), **changes):
    """A team's image (no imagekit label): its packages, a few more than the lock's, in a conda prefix."""
    f = facts(name, python, **{"vendor-extra": "9.9", **changes})
    return ImageFacts(ref=f"team/{name}:v8", name="", python=f.python, packages=f.packages,
                             prefix="/opt/conda", blas=list(blas))


def test_a_team_pair_without_labels_is_judged_against_its_partner_and_listed_against_the_lock(locked):
    cfg, lk = locked
    report = static.compare(cfg, lk, team("notebook", learn="1.6.1"), team("ray", learn="1.6.1", numbers="1.0"))
    assert report.differences == ["numbers: notebook 1.1, ray 1.0, lock 1.1"]  # the partner decides
    assert "learn: team/notebook:v8 has 1.6.1, the lock's shared view 1.7.0" in report.notes
    assert "numbers: team/ray:v8 has 1.0, the lock's shared view 1.1" in report.notes
    assert not any("label" in d or "vendor-extra" in d for d in report.differences + report.notes)
    assert static.compare(cfg, lk, team("notebook"), team("ray")).ok


def test_a_team_pair_whose_pythons_differ_is_refused_with_what_it_breaks(locked):
    cfg, lk = locked
    patch = static.compare(cfg, lk, team("notebook", python="3.11.0"), team("ray"))
    assert patch.differences == ["python: notebook 3.11.0, ray 3.11.2: a driver that joins the Ray cluster must match "
                                 "Python to the patch (Ray Client: the minor); take both images at the same Python patch"]
    assert "python: team/notebook:v8 has 3.11.0, the lock targets 3.11.2" in patch.notes
    minor = static.compare(cfg, lk, team("notebook", python="3.12.7"), team("ray")).differences
    assert minor[0].startswith("python: notebook 3.12.7, ray 3.11.2: different minors")


def test_an_image_of_imagekit_keeps_the_strict_rules_beside_a_team_image(locked):
    cfg, lk = locked
    report = static.compare(cfg, lk, team("notebook"), facts("ray", learn="1.6.1"))
    assert "learn: ray has 1.6.1, lock 1.7.0" in report.differences


def test_a_blas_difference_is_a_warning_not_a_failure(locked):
    cfg, lk = locked
    report = static.compare(cfg, lk, team("notebook"), team("ray", blas=("mkl 2024.2",)))
    assert report.ok and report.notes == [
        "blas (warning): notebook openblas 0.3.27, ray mkl 2024.2: a model may predict differently in the last "
        "bits; the round trip's comparison decides"]


def test_a_relocated_file_is_no_difference_and_a_patched_one_is(locked):
    cfg, lk = locked
    moved = ImageFacts(ref="r", name="ray", python="3.11.2", packages=facts("ray").packages,
                              relocated=[("learn", "../../../bin/learn", "/opt/venv")],
                              changed=[("numbers", "numbers/core.py", "changed")])
    assert static.compare(cfg, lk, facts("notebook"), moved).differences == [
        "numbers: numbers/core.py in ray is changed since install (not what its RECORD lists, same version 1.1)"]


finite = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
matrices = st.integers(1, 6).flatmap(lambda cols: st.lists(st.lists(finite, min_size=cols, max_size=cols),
                                                            min_size=1, max_size=8))


def predictions(probabilities):
    return {"labels": [max(range(len(r)), key=r.__getitem__) for r in probabilities], "probabilities": probabilities}


@given(matrices)
def test_the_same_predictions_always_pass(p):
    assert compare(predictions(p), predictions(p))[0]


@given(matrices, st.data(), st.sampled_from([math.nan, math.inf, -math.inf]))
def test_a_nan_or_infinity_anywhere_fails_and_says_so(p, data, bad):
    row = data.draw(st.integers(0, len(p) - 1))
    col = data.draw(st.integers(0, len(p[0]) - 1))
    served = [list(r) for r in p]
    served[row][col] = bad
    for expected, got in ((predictions(p), {"labels": predictions(p)["labels"], "probabilities": served}),
                          ({"labels": predictions(p)["labels"], "probabilities": served}, predictions(p))):
        ok, reason, _ = compare(expected, got)
        assert not ok and "not a finite number" in reason and f"probe row {row}" in reason


@given(matrices, st.data())
def test_a_missing_or_extra_row_or_class_fails_as_a_shape_difference(p, data):
    served = [list(r) for r in p]
    change = data.draw(st.sampled_from(["drop row", "add row", "drop class", "add class"]))
    if change == "drop row":
        served.pop()
    elif change == "add row":
        served.append(list(served[0]))
    elif change == "drop class":
        served[0].pop()
    else:
        served[-1].append(0.0)
    ok, reason, _ = compare(predictions(p), {"labels": predictions(p)["labels"], "probabilities": served})
    assert not ok and "different shape" in reason


@given(matrices, st.data(), st.floats(min_value=2e-9, max_value=0.5))
def test_a_difference_beyond_the_tolerance_fails_and_within_it_passes(p, data, delta):
    row = data.draw(st.integers(0, len(p) - 1))
    served = [list(r) for r in p]
    served[row][0] += delta
    assert not compare(predictions(p), {**predictions(p), "probabilities": served})[0]
    served[row][0] = p[row][0] + TOLERANCE / 4
    assert compare(predictions(p), {**predictions(p), "probabilities": served})[0]


def test_every_image_of_the_verified_set_is_held_to_its_view_and_to_the_notebook(locked):
    cfg, lk = locked
    batch = ImageFacts(ref="batch:test", name="ray", python="3.11.2",
                              packages={"learn": "1.6.1", "numbers": "1.1", "extra-tool": "0.1"})
    report = static.compare(cfg, lk, facts("notebook"), facts("ray"), [batch])
    assert "learn: notebook 1.7.0, ray 1.6.1, lock 1.7.0" in report.differences and report.others == [batch]
    assert static.compare(cfg, lk, facts("notebook"), facts("ray"), [facts("ray")]).differences == []


def test_regressors_compare_numbers_with_the_tolerance_and_need_no_probabilities():
    expected = {"labels": [1.5, 200000.25], "probabilities": None}
    assert compare(expected, {"labels": [1.5, 200000.25], "probabilities": None}) == (True, "", 0.0)
    ok, why, diff = compare(expected, {"labels": [1.5, 200000.5], "probabilities": None})
    assert not ok and why == "predictions differ by up to 0.25 (> 1e-09)" and diff == 0.25
    ok, why, _ = compare(expected, {"labels": [1.5, float("nan")], "probabilities": None})
    assert not ok and "not a finite number (nan)" in why
    ok, why, _ = compare({"labels": [0, 1], "probabilities": None},
                                   {"labels": [0, 1], "probabilities": [[1.0, 0.0], [0.0, 1.0]]})
    assert not ok and why == "probabilities from ray only"


def test_every_notebook_in_the_folder_is_a_scenario(tmp_path):
    for name in ("b-model", "a-model"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    (tmp_path / "helper.py").write_text("")
    assert policy.notebooks(tmp_path) == ("a-model", "b-model")


@pytest.mark.parametrize("uses, expected", [
    ({"m1", "m2"}, ["a", "b", "m1", "m2", "c", "d"]),  # two start while the tracking server boots, MLflow's next
    (set(), ["a", "b", "c", "d", "m1", "m2"]),
    ({"a", "b", "c", "d", "m1", "m2"}, ["a", "b", "c", "d", "m1", "m2"]),
    ({"b"}, ["a", "c", "b", "d", "m1", "m2"]),
])
def test_notebooks_that_log_to_mlflow_train_once_two_others_are_under_way(uses, expected):
    scenarios = ("a", "b", "c", "d", "m1", "m2")
    assert roundtrip.schedule(scenarios, uses) == expected
    assert sorted(roundtrip.schedule(scenarios, uses)) == sorted(scenarios)


def test_an_s3_endpoint_needs_a_url_and_keys(tmp_path, monkeypatch):
    from imagekit import config, redact
    from imagekit.errors import ConfigError, UsageError
    from support import write_project
    from imagekit.verify.s3store import endpoint

    path = write_project(tmp_path)
    with pytest.raises(UsageError, match="is not a URL") as e:
        endpoint(config.load(path, env={}), "minio:9000")
    assert e.value.exit_code == 2
    with pytest.raises(ConfigError, match="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        endpoint(config.load(path, env={"AWS_ACCESS_KEY_ID": "ci"}), "http://127.0.0.1:9000")
    keys = {"AWS_ACCESS_KEY_ID": "ci", "AWS_SECRET_ACCESS_KEY": "s3cr3t-minio"}
    found = endpoint(config.load(path, env=keys), "http://localhost:9000/")
    assert found.url == "http://localhost:9000" and "s3cr3t-minio" not in repr(found)
    assert redact.text("key s3cr3t-minio") != "key s3cr3t-minio"  # registered as a secret
    monkeypatch.setenv("DOCKER_HOST", "tcp://build-host.example:2376")  # its containers cannot reach our loopback
    with pytest.raises(PreconditionError) as e:
        endpoint(config.load(path, env=keys), "http://127.0.0.1:9000")
    assert "http://127.0.0.1:9000 is on this machine's loopback" in str(e.value) and e.value.exit_code == 2
    assert "kubectl port-forward --address 0.0.0.0 svc/<service> 9000" in e.value.hint
    assert endpoint(config.load(path, env=keys), "http://minio.example:9000").url == "http://minio.example:9000"


def test_the_relay_carries_a_loopback_service_to_the_gateway_address_and_closes_with_the_run():
    import http.server
    import os
    import time
    import threading
    import urllib.request

    from imagekit import forward

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello " + self.path.encode())

        def log_message(self, *args):
            pass
    service = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    url = f"http://localhost:{service.server_address[1]}"
    assert forward.is_loopback(url) and forward.is_loopback("http://127.0.0.2:1") and not forward.is_loopback(
        "http://minio.example:9000")
    descriptors = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    with forward.Forwarder(url, "127.0.0.1") as relay:  # the test's stand-in for the gateway address
        assert relay.inside == f"http://127.0.0.1:{relay.port}"
        before = descriptors()
        for n in range(2000):  # HTTP/1.0: a connection per request, as moto's server makes them
            assert urllib.request.urlopen(f"http://127.0.0.1:{relay.port}/{n}").read() == f"hello /{n}".encode()
        deadline = time.monotonic() + 10
        while relay.open and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not relay.open and descriptors() <= before + 4  # every relayed connection closed: none leaks
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{relay.port}/x", timeout=2)
    service.shutdown()
    with pytest.raises(PreconditionError, match="cannot listen on the engine's gateway 192.0.2.1"):
        forward.Forwarder(url, "192.0.2.1")


def stored_record(**fields):
    return {"meta": "iris/20261202T000000Z/meta.json", "node": "worker-1", "reused": False, "sha256": "ab" * 32,
            "fingerprint": [], "stage": "predict", "loaded": True, "error": "", "seconds": 0.1,
            "expected": {"labels": [0, 1], "probabilities": None},
            "served": {"labels": [0, 1], "probabilities": None, "warnings": []}, **fields}


@pytest.mark.parametrize("fields, reason", [
    ({}, ""),
    ({"served": {"labels": [0, 2], "probabilities": None, "warnings": []}}, "labels differ at probe rows [1] (notebook vs ray)"),
    ({"fingerprint": ["scikit-learn: trained with 1.9.1, serving with 1.8.0"]},
     "trained and served in different environments: scikit-learn: trained with 1.9.1, serving with 1.8.0"),
    ({"stage": "load", "loaded": False, "served": None, "error": "ModuleNotFoundError: No module named 'x'"},
     "could not load in ray: ModuleNotFoundError: No module named 'x'"),
    ({"error": "ValueError: bad shape", "served": None}, "ray could not predict: ValueError: bad shape"),
    ({"stage": "meta", "loaded": False, "served": None, "expected": None, "error": "meta.json is not JSON: x"},
     "meta.json is not JSON: x"),
    ({"stage": "process", "loaded": False, "served": None, "error": "the process checking it died"},
     "the process checking it died"),
])
def test_a_stored_outcome_is_judged_by_verify_compats_rules(fields, reason):
    from imagekit.verify import stored

    judged = stored.judge(stored_record(**fields))
    assert judged.name == "iris@20261202T000000Z" and judged.node == "worker-1"
    assert (judged.ok, judged.reason) == (reason == "", reason)


def test_a_notebooks_coloured_error_reaches_reasons_and_json_without_escape_codes():
    from imagekit import redact

    coloured = "\x1b[0;31mValueError\x1b[0m: Could not connect to \x1b[1;32mhttp://s3:9000\x1b[0m"
    assert proc.reason(f"cell 3\n{coloured}\n") == "ValueError: Could not connect to http://s3:9000"
    assert redact.data({"reason": coloured}) == {"reason": "ValueError: Could not connect to http://s3:9000"}


IPYTHON = ("\x1b[31mKeyError\x1b[39m                                  Traceback (most recent call last)\n"
           "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[2]\x1b[39m\x1b[32m, line 4\x1b[39m\n"
           "\x1b[32m----> \x1b[39m\x1b[32m4\x1b[39m y = f({})\n\n"
           "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[2]\x1b[39m\x1b[32m, line 2\x1b[39m, in \x1b[36mf\x1b[39m"
           "\x1b[34m(d)\x1b[39m\n"
           "\x1b[32m      1\x1b[39m def f(d):\n\x1b[32m----> \x1b[39m\x1b[32m2\x1b[39m     return d[\x1b[33m'missing'\x1b[39m]\n\n"
           "File /opt/conda/lib/python3.11/json/__init__.py:346, in loads(s)\n"
           "--> 346 return _default_decoder.decode(s)\n\n"
           "\x1b[31mKeyError\x1b[39m: 'missing'\n")


@pytest.mark.parametrize("output, at", [
    (IPYTHON, "Cell In[2], line 2, in f: return d['missing']"),  # the notebook's own last frame, not a library's
    ("Cell In[5], line 1\n----> 1 import sunat_models\nModuleNotFoundError: No module named 'sunat_models'",
     "Cell In[5], line 1: import sunat_models"),
    ("Traceback (most recent call last):\n  File \"<string>\", line 6\nKeyError: 'x'", ""),  # no cell: nothing said
])
def test_a_failed_notebook_is_placed_at_its_cell_and_line(output, at):
    assert proc.cell(output) == at


def test_what_the_parts_raise_becomes_an_engine_error_naming_the_step():
    import botocore.exceptions
    import docker.errors

    from imagekit.errors import EngineError, infrastructure

    for raised in (TimeoutError("container did not become running"), docker.errors.APIError("gone"),
                   botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3:9000")):
        with pytest.raises(EngineError) as e, infrastructure("verify-stored"):
            raise raised
        assert str(e.value).startswith(f"verify-stored could not go on: {type(raised).__name__}")
    with pytest.raises(KeyError), infrastructure("verify-stored"):  # a bug is not said to be the engine's
        raise KeyError("x")
    from imagekit.errors import PreconditionError
    with pytest.raises(PreconditionError) as e, infrastructure("verify-compat"):  # nor a file of this machine
        open("/nonexistent/notebooks/iris.ipynb")
    assert str(e.value).startswith("verify-compat could not go on: No such file or directory: "
                                   "/nonexistent/notebooks/iris.ipynb") and "permissions" in e.value.hint


def report_of(*, trips=("iris",), trip_ok=True, static_ok=True, lifecycle=True, pushed=True):
    """A VerifyReport as verify-compat makes it, from parts (no Docker)."""
    from imagekit import runtime
    from imagekit.verify.compat import VerifyReport
    from imagekit.verify.subjects import Subject

    digest = "sha256:" + "1" * 64 if pushed else ""
    image = ImageFacts(ref="x", name="ray", python="3.11.2", packages={})
    scenario = lambda n: roundtrip.ScenarioResult(n, trip_ok, "" if trip_ok else "differs", 0.0, [], 1.0, 1.0)  # noqa: E731
    return VerifyReport(notebook=Subject("notebook", "nb", "mlops-desa/scipy-notebook" if pushed else "", digest),
                        ray=Subject("ray", "ray", "mlops-desa/ray" if pushed else "", digest),
                        static=static.StaticReport(image, image, [] if static_ok else ["numpy: differs"]),
                        roundtrip=roundtrip.RoundtripReport("s3", "v", [scenario(n) for n in trips], 1.0, 1.0),
                        lifecycle=runtime.Item("pair", "lifecycle", True) if lifecycle else None)


@pytest.mark.parametrize("case, expected", [
    ({}, ""),
    ({"static_ok": False}, "not recorded: a check failed"),
    ({"trip_ok": False}, "not recorded: a check failed"),
    ({"pushed": False}, "not recorded: push the images first"),
    ({"trips": ()}, "not recorded: no model scenario ran"),
    ({"trips": (), "lifecycle": False}, "not recorded: a check failed"),  # nothing ran at all
])
def test_only_a_whole_passing_run_with_a_model_of_pushed_images_is_signed(case, expected):
    from imagekit.verify.policy import not_recorded

    report = report_of(**case)
    why = not_recorded(report, write_record=True, complete=True, key=object())
    assert why.startswith(expected) if expected else why == ""
    if not expected:
        assert not_recorded(report, write_record=False, complete=True, key=object()) == "not recorded: --no-record"
        assert not_recorded(report, write_record=True, complete=False, key=object()) == \
            "not recorded: only a subset of the scenarios ran"
        assert not_recorded(report, write_record=True, complete=True, key=None).startswith(
            "not recorded: no signing key")


def test_a_round_trip_of_no_model_is_not_a_pass():
    assert not roundtrip.RoundtripReport("s3", "v", [], 0.0, 0.0).ok
    assert report_of(trips=()).ok  # the lifecycle alone ran and passed (`--scenario lifecycle`)
    assert not report_of(trips=(), lifecycle=False).ok  # nothing but the static check ran


@pytest.mark.parametrize("served, reason", [
    ({"labels": [0, 1]}, "ray answered 2 labels for 3 probe rows"),
    ({"labels": [0, 1, 1, 0]}, "ray answered 4 labels for 3 probe rows"),
    ({"labels": [0.0, 1.0, 1.0]}, "labels differ in type at probe rows [0, 1, 2]: the notebook gave int 0, ray float 0.0"),
    ({"labels": [False, True, True]}, "labels differ in type at probe rows [0, 1, 2]: the notebook gave int 0, ray bool False"),
    ({"labels": ["0", "1", "1"]}, "labels differ at probe rows [0, 1, 2] (notebook vs ray)"),
])
def test_labels_must_be_as_many_and_of_the_same_type(served, reason):
    ok, why, _ = compare(EXPECTED, {"probabilities": EXPECTED["probabilities"], **served})
    assert not ok and why == reason
    assert not compare({**EXPECTED, "labels": [True, False, True]},
                                 {**EXPECTED, "labels": [1, 0, 1]})[0]  # and the other way round


@pytest.mark.parametrize("with_token, without_token, ok", [
    (200, 403, True), (200, 401, True), (200, 302, False), (200, 200, False), (403, 403, False), (0, 0, False)])
def test_the_hub_item_passes_only_a_server_that_answers_its_token_and_refuses_without(with_token, without_token, ok):
    from imagekit import runtime

    item = runtime.hub_item({"prefix": "/user/jovyan/", "with_token": with_token, "without_token": without_token,
                             "env": ["JUPYTERHUB_API_TOKEN"]}, 1.0)
    assert item.ok is ok and f"{with_token} with the token, {without_token} without" in item.detail


@pytest.mark.parametrize("args, message", [
    (("--batch-size", "0"), "a batch size of 0: it must be at least 1"),
    (("--ray-address", "head:10001"), "--ray-address 'head:10001' is not a Ray Client address"),
    (("--ray-address", "http://head:8265"), "is not a Ray Client address"),
])
def test_verify_stored_refuses_bad_options_before_any_work(tmp_path, cli, monkeypatch, args, message):
    import json

    import imagekit.cli.verify as verify_cli

    monkeypatch.setattr(verify_cli.Engine, "connect", classmethod(lambda cls: None))  # nothing reaches the engine
    code, out, _ = cli("--config", str(write_project(tmp_path)), "verify-stored", *args, "--json")
    error = json.loads(out)["error"]
    assert code == 2 and error["kind"] == "UsageError" and message in error["message"]


class PullingEngine:
    """An engine that holds no image and records each pull (ref, credentials); ``answer`` is why it refuses."""

    def __init__(self, answer: str = "") -> None:
        self.pulls, self.answer = [], answer

    def image(self, ref):
        return None

    def pull(self, ref, *, auth=None):
        self.pulls.append((ref, auth))
        return self.answer


TWO_REGISTRIES = """
[registry]
url = "harbor.example.org"
[[environments]]
name = "desa"
project = "mlops-desa"
[[environments]]
name = "prod"
project = "mlops-prod"
registry = "harbor-prod.example.org"
[[images]]
name = "base"
"""


def test_an_image_not_in_the_engine_is_pulled_with_its_environments_credentials(tmp_path):
    from imagekit import inventory

    cfg = config.load(write_project(tmp_path, TWO_REGISTRIES, {"base": ""}), env={
        "IMAGEKIT_REGISTRY_USERNAME": "robot$desa", "IMAGEKIT_REGISTRY_PASSWORD": "pw-desa",
        "IMAGEKIT_ENV_PROD_USERNAME": "robot$prod", "IMAGEKIT_ENV_PROD_PASSWORD": "pw-prod"})
    engine = PullingEngine()
    inventory.present(cfg, engine, "harbor-prod.example.org/mlops-prod/ray:v1")
    inventory.present(cfg, engine, "harbor.example.org/mlops-desa/ray:v1")
    assert engine.pulls == [("harbor-prod.example.org/mlops-prod/ray:v1", ("robot$prod", "pw-prod")),
                            ("harbor.example.org/mlops-desa/ray:v1", ("robot$desa", "pw-desa"))]
    engine.answer = "the registry harbor.example.org refused the credentials: unauthorized"
    with pytest.raises(PreconditionError, match="ray:v1 is neither in the engine nor pullable: the registry "
                                                "harbor.example.org refused the credentials"):
        inventory.present(cfg, engine, "harbor.example.org/mlops-desa/ray:v1")


def test_runtime_check_pulls_the_images_it_is_given_and_names_a_refused_pull(tmp_path):
    from imagekit import runtime

    cfg = config.load(write_project(tmp_path, TWO_REGISTRIES, {"base": ""}), env={
        "IMAGEKIT_ENV_PROD_USERNAME": "robot$prod", "IMAGEKIT_ENV_PROD_PASSWORD": "pw-prod"})
    engine = PullingEngine("the registry harbor-prod.example.org has no such image: manifest unknown")
    with pytest.raises(PreconditionError, match="harbor-prod.example.org has no such image"):  # before any container
        runtime.check_pair(cfg, engine, "harbor-prod.example.org/mlops-prod/ray:v9", "notebook:v1")
    assert engine.pulls == [("harbor-prod.example.org/mlops-prod/ray:v9", ("robot$prod", "pw-prod"))]


def test_an_image_built_on_a_vendor_base_may_keep_the_vendors_other_distributions(locked):
    cfg, lk = locked
    f = facts("ray", **{"vendor-tool": "1.0"})
    on_vendor = ImageFacts(ref="r", name="ray", python="3.11.2", packages=f.packages, base="rayproject/ray:2.41.0")
    report = static.compare(cfg, lk, facts("notebook"), on_vendor)
    assert report.ok and report.notes == ["vendor-tool: 1.0 in ray, kept from its vendor base rayproject/ray:2.41.0"]
    assert not static.compare(cfg, lk, facts("notebook"), facts("ray", **{"vendor-tool": "1.0"})).ok

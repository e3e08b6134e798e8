"""verify-stored at data-lake scale: batches, kept outcomes, faults, a loopback S3, a Ray cluster."""
import contextlib
import hashlib
import json
import os
import pickle
import shutil
import threading
import time
from urllib.parse import urlsplit

import boto3
import pytest
from helpers import ROOT, variant

import support
from imagekit import config, forward, services
from imagekit.errors import EngineError, PreconditionError
from imagekit.verify import s3store
from imagekit.verify.compat import verify_compat
from imagekit.verify.stored import verify_stored

KEYS = {"AWS_ACCESS_KEY_ID": "imagekit-lake", "AWS_SECRET_ACCESS_KEY": "lake-test-secret"}
MODELS, EVAL = "lake-models", "lake-eval"
ENV = {**KEYS, "IMAGEKIT_VERIFY_MODELS_BUCKET": MODELS, "IMAGEKIT_VERIFY_EVAL_BUCKET": EVAL}


@contextlib.contextmanager
def bridged(port: int, engine):
    """The loopback S3 server where a cluster's nodes reach it themselves: host.docker.internal:<port>."""
    with forward.Forwarder(f"http://127.0.0.1:{port}", forward.gateway(engine.client)) as relay:
        yield f"http://{forward.HOST_ALIAS}:{relay.port}"


def s3_client(url: str):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="module")
def lake(cfg, engine, built, tmp_path_factory):
    """An S3 server listening on this machine's loopback only, as `kubectl port-forward` gives it,
    holding the iris model published by a real verify-compat through it."""
    with support.moto_server() as port:
        url = f"http://127.0.0.1:{port}"
        folder = tmp_path_factory.mktemp("lake-scenarios")
        shutil.copy(ROOT / "examples" / "notebooks" / "iris.ipynb", folder)
        lcfg = config.load(cfg.source, env={"IMAGEKIT_VERIFY_NOTEBOOKS": str(folder), **ENV})
        report = verify_compat(lcfg, engine, s3_endpoint=url, write_record=False, scenarios=("iris",))
        assert report.ok, report.roundtrip.scenarios  # the containers reached a loopback-only server
        yield lcfg, url, s3_client(url)


def test_a_lake_larger_than_a_batch_is_checked_once_and_kept_outcomes_are_reused(lake, cli, monkeypatch):
    lcfg, url, client = lake
    support.copy_lake(client, MODELS, 1005, prefix="big", of="iris/")  # the lake size that once made a traceback
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    args = ("--config", lcfg.source, "verify-stored", "--s3-endpoint", url, "--batch-size", "400", "--json", "big/")
    code, out, err = cli(*args)
    report = json.loads(out)["result"]
    assert code == 0 and report["ok"], err
    assert len(report["models"]) == 1005 and report["checked"] == 1005 and report["reused"] == 0
    assert report["batch_size"] == 400 and all(m["node"] for m in report["models"])  # three batches, each a process
    assert "Traceback" not in err and KEYS["AWS_SECRET_ACCESS_KEY"] not in out + err
    changed = client.list_objects_v2(Bucket=MODELS, Prefix="big/iris-3/")["Contents"]
    pickled = next(o["Key"] for o in changed if o["Key"].endswith("/model.pkl"))
    client.put_object(Bucket=MODELS, Key=pickled, Body=client.get_object(Bucket=MODELS, Key=pickled)["Body"].read()
                      + b"#changed")  # other bytes, the same meta.json: its kept outcome no longer holds
    edited = next(o["Key"] for o in client.list_objects_v2(Bucket=MODELS, Prefix="big/iris-5/")["Contents"]
                  if o["Key"].endswith("/meta.json"))
    meta = json.loads(client.get_object(Bucket=MODELS, Key=edited)["Body"].read())
    client.put_object(Bucket=MODELS, Key=edited, Body=json.dumps(  # the same model, another expected label
        {**meta, "labels": [(meta["labels"][0] + 1) % 3, *meta["labels"][1:]]}).encode())
    code, out, _ = cli(*args)  # the same image again: only the two changed models are checked
    again = json.loads(out)["result"]
    assert code == 1 and again["checked"] == 2 and again["reused"] == 1003
    failed = {m["name"]: m for m in again["models"] if not m["ok"]}
    assert sorted((n, m["reused"]) for n, m in failed.items()) == [
        (key.rsplit("/", 1)[0].replace("/", "@"), False) for key in (pickled, edited)]
    assert "sha256 mismatch" in failed[pickled.rsplit("/", 1)[0].replace("/", "@")]["reason"]
    assert "labels differ at probe rows [0]" in failed[edited.rsplit("/", 1)[0].replace("/", "@")]["reason"]
    code, out, _ = cli(*args[:-1], "big/iris-7/", "--recheck")
    assert code == 0 and [(m["name"], m["reused"]) for m in json.loads(out)["result"]["models"]] == [
        (next(m["name"] for m in report["models"] if m["name"].startswith("big@iris-7@")), False)]


class Exit:
    """Unpickling it ends the process that unpickles it, as a broken or hostile pickle may."""

    def __reduce__(self):
        return (os._exit, (7,))


def test_a_model_that_kills_its_process_and_broken_metas_are_named_the_others_checked(lake, engine):
    lcfg, url, client = lake
    folder = support.copy_lake(client, MODELS, 3, prefix="faults", of="iris/")[0].rsplit("/", 1)[0]
    meta = json.loads(client.get_object(Bucket=MODELS, Key=f"{folder}/meta.json")["Body"].read())
    body = pickle.dumps(Exit())
    client.put_object(Bucket=MODELS, Key="faults/exit/1/model.pkl", Body=body)
    client.put_object(Bucket=MODELS, Key="faults/exit/1/meta.json", Body=json.dumps(
        {**meta, "key": "faults/exit/1/model.pkl", "sha256": hashlib.sha256(body).hexdigest()}).encode())
    client.put_object(Bucket=MODELS, Key="faults/garbled/1/meta.json", Body=b"{not json")
    client.put_object(Bucket=MODELS, Key="faults/gone/1/meta.json", Body=json.dumps(
        {**meta, "key": "faults/gone/1/model.pkl"}).encode())
    lines = []
    report = verify_stored(lcfg, engine, prefix="faults/", s3_endpoint=url, batch_size=4, on_line=lines.append)
    models = {m.name: m for m in report.models}
    assert not report.ok and len(models) == 6
    assert [line.split("checking its ")[1] for line in lines if "process died" in line] == [  # halved to the model
        "4 models again in two halves", "2 models again in two halves"], lines  # exit/ is in the first batch
    assert "the process checking it died" in models["faults@exit@1"].reason
    assert models["faults@garbled@1"].reason.startswith("meta.json is not JSON")
    assert models["faults@gone@1"].reason == f"meta.json names s3://{MODELS}/faults/gone/1/model.pkl, " \
                                            "which does not exist"
    assert sum(m.ok for m in report.models) == 3  # the copies, checked whatever shared a batch with them


def test_an_s3_server_stopped_during_the_check_stops_it_with_a_clear_error(cfg, engine, built, lake, run):
    _, _, source = lake
    s3 = next(i for i in built.images if i.name == "s3")  # the stand-in, on a port of this machine's loopback
    server = run.start(services.S3Server(s3.image_id, {**KEYS, "AWS_DEFAULT_REGION": "us-east-1"}, minio=False),
                       ready=60)
    failure = {}
    try:
        url = server.url(9000)
        client = s3_client(url)
        support.transplant(source, client, MODELS, "iris/")
        support.copy_lake(client, MODELS, 300)

        def run():
            try:
                failure["report"] = verify_stored(config.load(cfg.source, env=ENV), engine, s3_endpoint=url,
                                                  batch_size=10)
            except EngineError as e:
                failure["error"] = e
        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not failure:
            with contextlib.suppress(Exception):  # the eval bucket is not there yet
                if client.list_objects_v2(Bucket=EVAL, Prefix="verify-stored/")["KeyCount"] >= 10:
                    break
            time.sleep(0.5)
        server.c.kill()
        thread.join(300)
    finally:
        server.remove()
    assert "report" not in failure, "a check whose S3 went away reported a result"
    assert "S3 at http://" in str(failure["error"]) and "stopped answering" in str(failure["error"])
    assert "outcomes kept so far are reused" in failure["error"].hint


def test_an_endpoint_the_containers_cannot_reach_is_refused_before_any_work(engine, built, run):
    ray = next(i for i in built.images if i.name == "ray")
    c = run.start(services.Idle(ray.image_id, network_mode="none"))
    started = time.monotonic()
    with pytest.raises(PreconditionError) as e:
        s3store.reachable(c, "http://192.0.2.1:9000", "the S3 server", "http://minio.example:9000")
    assert time.monotonic() - started < 30
    assert "the S3 server http://minio.example:9000 cannot be reached from inside a container (as " \
           "http://192.0.2.1:9000)" in str(e.value) and "Network is unreachable" in str(e.value)


@pytest.fixture(scope="module")
def cluster(engine, built):
    """A Ray head and two workers from the built Ray image, the client server on this machine's loopback."""
    ray = next(i for i in built.images if i.name == "ray")
    with support.ray_cluster(engine, ray.image_id, 2, name="stored") as (address, nodes):
        yield ray, address, nodes[0]


def test_on_a_ray_cluster_the_models_are_spread_over_its_nodes(cfg, engine, lake, cluster):
    _, url, client = lake
    address = cluster[1]
    support.copy_lake(client, MODELS, 30, prefix="cluster", of="iris/")
    with bridged(urlsplit(url).port, engine) as theirs:  # the lake, where the cluster reaches it itself
        ccfg = config.load(cfg.source, env={**ENV, "IMAGEKIT_VERIFY_CLUSTER_S3_ENDPOINT": theirs})
        lines = []
        report = verify_stored(ccfg, engine, prefix="cluster/", s3_endpoint=url, ray_address=address, batch_size=10,
                               on_line=lines.append)  # three batches: one per node's one CPU
    assert report.ok, [m.reason for m in report.models if not m.ok]
    assert len(report.models) == 30 and report.cluster == address and "on 3 node(s)" in " ".join(lines)
    assert len(report.nodes) > 1 and set(report.nodes) <= {"head", "worker-1", "worker-2"}
    assert all(m.node in report.nodes for m in report.models)


def test_a_cluster_in_another_environment_than_the_candidate_is_refused(cfg, engine, lake, cluster, tmp_path):
    ray, address, _ = cluster
    other = variant(engine, f"{ray.repository}:{ray.tags[0]}", tmp_path, "ray-no-custom-stored",
                    "RUN pip uninstall -q -y sunat-custom-models")
    _, url, _ = lake
    with pytest.raises(EngineError) as e:
        verify_stored(config.load(cfg.source, env=ENV), engine, ray=other, s3_endpoint=url, ray_address=address,
                      prefix="iris/")
    assert "runs another environment than the candidate Ray image" in str(e.value)
    assert "sunat-custom-models==1.0.0" in str(e.value)


def test_as_a_rayjob_the_head_lists_the_lake_itself_and_a_later_run_reuses_its_outcomes(cfg, engine, lake, cluster):
    """The README's RayJob entrypoint, run on the head as KubeRay's job submission would."""
    lcfg, url, client = lake
    ray, _, head = cluster
    support.copy_lake(client, MODELS, 6, prefix="rayjob", of="iris/")
    with bridged(urlsplit(url).port, engine) as theirs:  # the lake, where the head reaches it itself
        code, out = head.exec(["python", "-m", "stored_check", "--prefix", "rayjob/", "--out", "/tmp/o.jsonl",
                               "--image", ray.image_id, "--batch-size", "2"],
                              env={**ENV, "IMAGEKIT_MODELS_BUCKET": MODELS, "IMAGEKIT_EVAL_BUCKET": EVAL,
                                   "AWS_ENDPOINT_URL": theirs, "RAY_ADDRESS": "auto"})
    assert code == 0, out[-2000:]
    assert "stored_check: checked 6/6 models" in out
    report = verify_stored(lcfg, engine, prefix="rayjob/", s3_endpoint=url)
    assert report.ok and report.reused == 6 and report.checked == 0


def test_an_s3_endpoint_that_is_down_is_a_clear_exit_2_with_the_envelope(cfg, built, cli, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    port = support.free_port()  # a port nothing listens on: a port-forward that has stopped
    started = time.monotonic()
    code, out, err = cli("--config", cfg.source, "verify-stored", "--s3-endpoint", f"http://127.0.0.1:{port}", "--json")
    envelope = json.loads(out)
    assert code == 2 and envelope["ok"] is False and envelope["result"] is None and "Traceback" not in err
    assert envelope["error"]["message"].startswith(f"the S3 endpoint http://127.0.0.1:{port} cannot be used: "
                                                   "EndpointConnectionError")
    assert "port-forward" in envelope["error"]["hint"] and time.monotonic() - started < 30


def test_an_earlier_release_is_checked_with_the_code_imagekit_brings_and_what_it_lacks_is_named(cfg, engine, built,
                                                                                                lake, tmp_path):
    lcfg, url, _ = lake
    ray = built.image("ray")
    older = variant(engine, f"{ray.repository}:{ray.tags[0]}", tmp_path, "ray-no-stored-check",
                    "RUN rm /opt/serving/stored_check.py")  # as Ray images of releases before v13
    assert verify_stored(lcfg, engine, ray=older, prefix="iris/", s3_endpoint=url).ok
    lacking = variant(engine, f"{ray.repository}:{ray.tags[0]}", tmp_path, "ray-no-boto3",
                      "RUN pip uninstall -q -y boto3")
    with pytest.raises(PreconditionError) as e:
        verify_stored(lcfg, engine, ray=lacking, prefix="iris/", s3_endpoint=url)
    assert str(e.value).startswith(f"the Ray image {lacking} cannot check stored models: ")
    assert "No module named 'boto3'" in str(e.value) and "Traceback" not in str(e.value)


def test_a_team_ray_image_checks_the_lake_as_it_is(lake, engine, vendor):
    """The Ray stand-in (conda prefix, no stored_check of its own): imagekit's checker is copied in."""
    lcfg, url, _ = lake
    report = verify_stored(lcfg, engine, ray=vendor["ray"], prefix="iris/", s3_endpoint=url)
    assert report.ok and report.checked + report.reused == len(report.models) >= 1, report.models

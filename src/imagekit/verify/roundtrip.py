"""Round trip with Testcontainers: notebooks train and publish to S3, Ray Serve loads and answers.

One Docker network holds an S3 server (MinIO where its image can be had, else the locally built
stand-in; none with an endpoint of the user's own), the notebook image (executing the scenario
notebooks headless: every *.ipynb of verify.notebooks, named by its file stem, with the publishing
helper imagekit_publish.py put beside them) and the Ray image (serving every published model).
Every container and the network are removed afterwards, also on failure and on Ctrl-C.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
import requests
from botocore.config import Config as BotoConfig

from imagekit import forward, redact
from imagekit.errors import EngineError, PreconditionError
from imagekit.forward import HOST_ALIAS

TOLERANCE = 1e-9
NOTEBOOKS = "/tmp/imagekit-scenarios"  # not the home: any notebook image, whatever its user
HELPER = Path(__file__).with_name("imagekit_publish.py")


def discover(folder: Path) -> tuple[str, ...]:
    """The scenarios: every notebook in ``folder``, by file stem."""
    return tuple(sorted(p.stem for p in folder.glob("*.ipynb")))


@dataclass(frozen=True)
class Buckets:
    models: str = "cybersec-ml-models"
    eval: str = "cybersec-ml-eval"
    others: tuple[str, ...] = ("cybersec-ml-raw", "cybersec-ml-silver")


@dataclass(frozen=True)
class S3Server:
    image: str
    description: str
    command: list[str]
    env: dict[str, str]


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    ok: bool
    reason: str
    max_probability_diff: float | None
    warnings: list[str]  # raised while the Ray image predicted (not failures)
    train_seconds: float
    serve_seconds: float
    fingerprint: list[str] = field(default_factory=list)  # where training and serving environments differ
    loaded: bool = False  # unpickled in the Ray image
    same_predictions: bool = False  # and answered what the notebook predicted


@dataclass(frozen=True)
class RoundtripReport:
    s3_server: str
    version: str  # the timestamp the models were published under
    scenarios: list[ScenarioResult]
    ray_startup_seconds: float
    seconds: float

    @property
    def ok(self) -> bool:
        """At least one model checked, and every one passed."""
        return bool(self.scenarios) and all(s.ok for s in self.scenarios)


def _finite(values: list, side: str, what: str, row: int | None = None) -> str:
    bad = [v for v in values if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v)]
    return f"{side} gave a {what} that is not a finite number ({bad[0]})" + (
        f" at probe row {row}" if row is not None else "") if bad else ""


def compare(expected: dict, served: dict) -> tuple[bool, str, float | None]:
    """Labels equal and of the same type (a regressor's numbers: within TOLERANCE) and probabilities within TOLERANCE
    (null on both sides for a model without predict_proba), every number finite; the reason names
    the first difference. A NaN or an infinity is never "within tolerance"."""
    want, got = expected["labels"], served.get("labels")
    if not isinstance(got, list) or len(got) != len(want):
        return False, (f"ray answered {len(got) if isinstance(got, list) else 'no'} labels for "
                       f"{len(want)} probe rows"), None
    diff = 0.0
    if any(isinstance(v, float) for v in want):  # a regressor: numbers, compared with the tolerance
        why = _finite(want, "the notebook", "prediction") or _finite(got, "ray", "prediction")
        if why:
            return False, why, None
        diff = max((abs(x - y) for x, y in zip(want, got)), default=0.0)
        if diff > TOLERANCE:
            return False, f"predictions differ by up to {diff:.3g} (> {TOLERANCE:g})", diff
    else:  # classes: equal and of the same JSON type (1 is not 1.0 nor True: another classes_ dtype)
        bad = [i for i, (a, b) in enumerate(zip(want, got)) if a != b]
        if bad:
            return False, f"labels differ at probe rows {bad[:5]} (notebook vs ray)", None
        kind = [i for i, (a, b) in enumerate(zip(want, got)) if type(a) is not type(b)]
        if kind:
            i = kind[0]
            return False, (f"labels differ in type at probe rows {kind[:5]}: the notebook gave "
                           f"{type(want[i]).__name__} {want[i]!r}, ray {type(got[i]).__name__} {got[i]!r}"), None
    a, b = expected.get("probabilities"), served.get("probabilities")
    if a is None or b is None:
        if a is None and b is None:
            return True, "", diff
        return False, f"probabilities from {'ray' if a is None else 'the notebook'} only", None
    if not isinstance(b, list) or len(a) != len(b):
        return False, (f"probabilities have a different shape: {len(a)} probe rows in the notebook, "
                       f"{len(b) if isinstance(b, list) else 'none'} from ray"), None
    for row, (x, y) in enumerate(zip(a, b)):
        if not isinstance(y, list) or len(x) != len(y):
            return False, (f"probabilities have a different shape: probe row {row} has {len(x)} classes in the "
                           f"notebook, {len(y) if isinstance(y, list) else 'none'} from ray"), None
        why = _finite(y, "ray", "probability", row) or _finite(x, "the notebook", "probability", row)
        if why:
            return False, why, None
    diff = max((abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)), default=0.0)
    if diff > TOLERANCE:
        return False, f"probabilities differ by up to {diff:.3g} (> {TOLERANCE:g})", diff
    return True, "", diff


@dataclass(frozen=True)
class Trained:
    """A scenario notebook executed in the notebook image."""
    name: str
    seconds: float
    meta: dict | None  # what it published (meta.json), None when the notebook failed
    reason: str = ""


@dataclass(frozen=True)
class Served:
    """A published model asked, in the Ray image, for the probe rows' predictions."""
    ok: bool
    reason: str
    diff: float | None
    warnings: list[str]
    seconds: float
    loaded: bool = True


@dataclass(frozen=True)
class Endpoint:
    """An S3 server of the user's own (--s3-endpoint): the platform's MinIO from CI, or a
    ``kubectl port-forward`` on this machine's loopback (relayed for the containers: forward.py)."""
    url: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)


class S3(contextlib.AbstractContextManager):
    """The S3 store: a server on the run's network (alias ``s3``), or the user's endpoint; a boto3
    client from here, and what containers are given to reach it (``inside``)."""

    def __init__(self, server: S3Server | Endpoint, network, keys: dict[str, str], inside: str = "") -> None:
        from testcontainers.core.container import DockerContainer

        self.server, self.container = server, None
        if isinstance(server, Endpoint):
            self.keys = {"AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key,
                         "AWS_DEFAULT_REGION": keys["AWS_DEFAULT_REGION"]}
            self.url, self.inside = server.url, inside or server.url
            return
        self.keys = keys
        self.container = DockerContainer(server.image).with_command(server.command).with_network(network) \
            .with_network_aliases("s3").with_exposed_ports(9000)
        for k, v in {**server.env, **keys}.items():
            self.container.with_env(k, v)
        self.inside = "http://s3:9000"

    def __enter__(self) -> "S3":
        if self.container:
            self.container.start()
            c = self.container
            self.url = f"http://{c.get_container_host_ip()}:{c.get_exposed_port(9000)}"
        self.client = boto3.client("s3", endpoint_url=self.url, config=BotoConfig(retries={"max_attempts": 1}),
                                   region_name=self.keys["AWS_DEFAULT_REGION"],
                                   aws_access_key_id=self.keys["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=self.keys["AWS_SECRET_ACCESS_KEY"])
        if self.container:
            until(lambda: self.client.list_buckets(), 60, f"the S3 server at {self.url} did not answer")
            return self
        try:  # the user's: up or not, and these keys let in or not
            self.client.list_buckets()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            raise PreconditionError(f"the S3 endpoint {self.url} cannot be used: {type(e).__name__}: {e}",
                                    hint="check the URL and the keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); "
                                         "for a port-forward, that it is still running") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.container:
            self.container.stop()

    def ensure(self, bucket: str) -> None:
        if bucket not in {b["Name"] for b in self.client.list_buckets().get("Buckets", [])}:
            self.client.create_bucket(Bucket=bucket)

    def json(self, bucket: str, key: str) -> dict:
        return json.loads(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())

    def metas(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys of every meta.json under ``prefix``."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith("/meta.json"))


def _host_gateway(container) -> None:
    container.with_kwargs(extra_hosts={HOST_ALIAS: "host-gateway"})


class Trainer(contextlib.AbstractContextManager):
    """The notebook image, idle, with the scenario notebooks and the publishing helper copied in;
    executes one at a time."""

    def __init__(self, image: str, network, env: dict[str, str], notebooks: Path) -> None:
        from testcontainers.core.container import DockerContainer

        self.container = DockerContainer(image).with_command(["sleep", "infinity"]).with_network(network)
        _host_gateway(self.container)
        for k, v in {**env, "PYTHONPATH": NOTEBOOKS}.items():
            self.container.with_env(k, v)
        self.notebooks = notebooks

    def __enter__(self) -> "Trainer":
        self.container.start()
        from imagekit.engine import Engine
        c = self.container.get_wrapped_container()
        Engine.put(c, NOTEBOOKS, self.notebooks)  # no bind mount: remote engines
        Engine.put(c, f"{NOTEBOOKS}/{HELPER.name}", HELPER)
        return self

    def __exit__(self, *exc) -> None:
        self.container.stop()

    def train(self, name: str, s3: S3, bucket: str, version: str) -> Trained:
        started = time.monotonic()
        code, output = self.container.exec(["env", f"IMAGEKIT_SCENARIO={name}", "jupyter", "nbconvert", "--to",
                                            "notebook", "--execute", "--output-dir", "/tmp/executed",
                                            f"{NOTEBOOKS}/{name}.ipynb"])
        seconds = round(time.monotonic() - started, 1)
        if code != 0:
            return Trained(name, seconds, None, "notebook failed: " + _last_error(output.decode(errors="replace")))
        try:
            return Trained(name, seconds, s3.json(bucket, f"{name}/{version}/meta.json"))
        except s3.client.exceptions.NoSuchKey:
            return Trained(name, seconds, None, f"the notebook published nothing under {bucket}/{name}/{version}/: "
                                                f"it must call imagekit_publish.publish(model, probe)")


class Server(contextlib.AbstractContextManager):
    """The Ray image serving the published models with Ray Serve (its default command)."""

    def __init__(self, image: str, network, env: dict[str, str], models: dict[str, dict]) -> None:
        from testcontainers.core.container import DockerContainer

        self.container = DockerContainer(image).with_network(network).with_exposed_ports(8000) \
            .with_kwargs(shm_size="1g", extra_hosts={HOST_ALIAS: "host-gateway"}) \
            .with_env("IMAGEKIT_MODELS", json.dumps(models))
        for k, v in env.items():
            self.container.with_env(k, v)
        self.models = models

    def __enter__(self) -> "Server":
        self.container.start()
        c = self.container
        self.url = f"http://{c.get_container_host_ip()}:{c.get_exposed_port(8000)}"
        return self

    def __exit__(self, *exc) -> None:
        self.container.stop()

    def wait_ready(self, seconds: float) -> dict:
        """/status once the server knows every model: {"models": {name: status}, "fingerprints": ...}."""
        logs = lambda: self.container.get_wrapped_container().logs()[-3000:].decode(errors="replace")  # noqa: E731
        return until(lambda: _status(self.url, self.models), seconds, "Ray Serve did not come up", logs=logs)

    def serve(self, name: str, meta: dict, status: str) -> Served:
        started = time.monotonic()
        if status != "loaded":
            return Served(False, f"could not load in ray: {status}", None, [], 0.0, loaded=False)
        r = requests.post(f"{self.url}/models/{name}/predict", json={"instances": meta["instances"]}, timeout=60)
        if r.status_code != 200:
            return Served(False, f"ray answered {r.status_code}: {r.text[:300]}", None, [], 0.0)
        ok, reason, diff = compare(meta, r.json())
        return Served(ok, reason, diff, r.json().get("warnings", []), round(time.monotonic() - started, 2))

    def shutdown(self) -> None:
        self.container.exec(["serve", "shutdown", "-y"])


def spec(meta: dict) -> dict:
    return {k: meta[k] for k in ("bucket", "key", "sha256", "environment") if k in meta}


def _result(name: str, served: Served, fingerprint: list[str], train_seconds: float) -> ScenarioResult:
    """A model passes when it loads and predicts the same, in the environment it was trained in."""
    reason = served.reason or ("trained and served in different environments: " + "; ".join(fingerprint)
                               if fingerprint else "")
    return ScenarioResult(name, served.ok and not fingerprint, reason, served.diff, served.warnings, train_seconds,
                          served.seconds, fingerprint, loaded=served.loaded, same_predictions=served.ok)


def run(notebook: str, ray: str, s3: S3Server | Endpoint, notebooks: Path, *, scenarios: tuple[str, ...],
        buckets: Buckets = Buckets(), trained_in: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None, timeout: float = 300) -> RoundtripReport:
    """Train every scenario in the notebook image, publish to S3, serve each model in the Ray image.
    ``trained_in``: IMAGEKIT_IMAGE and IMAGEKIT_LOCK, recorded in each model's fingerprint."""
    note = on_line or (lambda line: None)
    started = time.monotonic()
    version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    with on_network() as (stack, network):
        store = open_store(stack, s3, network, note)
        for bucket in (buckets.models, buckets.eval, *buckets.others):
            store.ensure(bucket)
        inside = {**store.keys, "AWS_ENDPOINT_URL": store.inside, "IMAGEKIT_MODELS_BUCKET": buckets.models,
                  **({"IMAGEKIT_RAW_BUCKET": buckets.others[0], "IMAGEKIT_SILVER_BUCKET": buckets.others[1]}
                     if len(buckets.others) >= 2 else {})}
        trainer = stack.enter_context(Trainer(notebook, network, {**inside, **(trained_in or {}),
                                                                  "IMAGEKIT_RUN": version}, notebooks))
        reachable(trainer.container.get_wrapped_container(), store.inside, "the S3 server", store.url)
        trained = {}
        for name in scenarios:
            note(f"training {name} in the notebook image")
            trained[name] = trainer.train(name, store, buckets.models, version)
        models = {n: spec(t.meta) for n, t in trained.items() if t.meta}
        note("starting Ray Serve in the ray image")
        t0 = time.monotonic()
        server = stack.enter_context(Server(ray, network, inside, models))
        status = server.wait_ready(timeout)
        ray_startup = round(time.monotonic() - t0, 1)
        results = []
        for name in scenarios:
            t = trained[name]
            if t.meta is None:
                results.append(ScenarioResult(name, False, t.reason, None, [], t.seconds, 0.0))
                continue
            note(f"serving {name}")
            results.append(_result(name, server.serve(name, t.meta, status["models"][name]),
                                   status.get("fingerprints", {}).get(name, []), t.seconds))
        note("shutting the Ray Serve deployment down")
        server.shutdown()
        report = RoundtripReport(s3_server=describe(s3), version=version, scenarios=results,
                                 ray_startup_seconds=ray_startup, seconds=round(time.monotonic() - started, 1))
        store.client.put_object(Bucket=buckets.eval, Key=f"verify-compat/{version}/report.json",
                                Body=json.dumps(asdict(report), indent=1).encode())
        return report


@contextlib.contextmanager
def on_network():
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # the Ryuk image cannot be pulled everywhere
    from testcontainers.core.network import Network

    with contextlib.ExitStack() as stack:
        yield stack, stack.enter_context(Network())


def open_store(stack, s3: S3Server | Endpoint, network, note) -> S3:
    note(f"S3: {describe(s3)}")
    keys = {"AWS_ACCESS_KEY_ID": "imagekit", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
            "AWS_DEFAULT_REGION": "us-east-1"}
    return stack.enter_context(S3(s3, network, keys, inside=relay(stack, s3.url, "the S3 endpoint", note)
                                  if isinstance(s3, Endpoint) else ""))


def relay(stack, url: str, what: str, note) -> str:
    """The URL containers use for ``url``: itself, or a relay's on the engine's gateway for a loopback one."""
    if not forward.is_loopback(url):
        return url
    forward.require_local(url, what)
    import docker

    relayed = stack.enter_context(forward.Forwarder(url, forward.gateway(docker.from_env())))
    note(f"{what} {url} is on the loopback: relayed for the containers as {relayed.inside}")
    return relayed.inside


def reachable(container, url: str, what: str, given: str) -> None:
    """``url`` takes a TCP connection from inside ``container`` (a docker-py one), else the run stops
    before any work, naming the address."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    code, out = container.exec_run(["python", "-c", f"import socket; socket.create_connection(({parts.hostname!r}, "
                                                    f"{port}), timeout=5)"])
    if code != 0:
        last = (out.decode(errors="replace").strip().splitlines() or ["no answer"])[-1]
        raise PreconditionError(f"{what} {given} cannot be reached from inside a container (as {url}): {last}",
                                hint="check the address from this machine; a server must listen where the "
                                     "containers reach it (not a loopback of another machine)")


def describe(s3: S3Server | Endpoint) -> str:
    return f"endpoint {s3.url}" if isinstance(s3, Endpoint) else s3.description


def _status(base_url: str, models: dict) -> dict | None:
    try:
        r = requests.get(f"{base_url}/status", timeout=2)
    except requests.RequestException:
        return None
    found = r.json() if r.status_code == 200 else {}
    return found if set(found.get("models", {})) >= set(models) else None


def until(probe, seconds: float, what: str, logs=None):
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = probe()
            if value is not None:
                return value
        except Exception:  # the server is not up yet
            pass
        if time.monotonic() > deadline:
            raise EngineError(f"{what} within {seconds:.0f} s" + (f":\n{logs()}" if logs else ""))
        time.sleep(0.5)


def _last_error(output: str) -> str:
    lines = [line for line in redact.plain(output).strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["no output"])[-1][:400]

"""Round trip with Testcontainers: notebooks train and publish to S3, Ray Serve loads and answers.

One Docker network holds an S3 server (MinIO where its image can be had, else the locally built
stand-in), the notebook image (executing the example notebooks headless) and the Ray image
(serving every published model). Every container and the network are removed afterwards, also
on failure and on Ctrl-C.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import boto3
import requests
from botocore.config import Config as BotoConfig

from imagekit.errors import EngineError

SCENARIOS = ("iris", "cybersec", "custom-v1", "custom-v2")
BUCKETS = ("cybersec-ml-raw", "cybersec-ml-silver", "cybersec-ml-models", "cybersec-ml-eval")
TOLERANCE = 1e-9
NOTEBOOKS = "/home/jovyan/examples"


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


@dataclass(frozen=True)
class RoundtripReport:
    s3_server: str
    version: str  # the timestamp the models were published under
    scenarios: list[ScenarioResult]
    ray_startup_seconds: float
    seconds: float

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.scenarios)


def compare(expected: dict, served: dict) -> tuple[bool, str, float | None]:
    """Labels equal and probabilities within TOLERANCE, every one a finite number; the reason names
    the first difference. A NaN or an infinity is never "within tolerance"."""
    if served.get("labels") != expected["labels"]:
        bad = [i for i, (a, b) in enumerate(zip(expected["labels"], served.get("labels") or [])) if a != b]
        got = served.get("labels")
        if not isinstance(got, list) or len(got) != len(expected["labels"]):
            return False, (f"ray answered {len(got) if isinstance(got, list) else 'no'} labels for "
                           f"{len(expected['labels'])} probe rows"), None
        return False, f"labels differ at probe rows {bad[:5]} (notebook vs ray)", None
    a, b = expected["probabilities"], served.get("probabilities")
    if not isinstance(b, list) or len(a) != len(b):
        return False, (f"probabilities have a different shape: {len(a)} probe rows in the notebook, "
                       f"{len(b) if isinstance(b, list) else 'none'} from ray"), None
    for row, (x, y) in enumerate(zip(a, b)):
        if not isinstance(y, list) or len(x) != len(y):
            return False, (f"probabilities have a different shape: probe row {row} has {len(x)} classes in the "
                           f"notebook, {len(y) if isinstance(y, list) else 'none'} from ray"), None
        for side, values in (("ray", y), ("the notebook", x)):
            bad = [v for v in values if not isinstance(v, (int, float)) or not math.isfinite(v)]
            if bad:
                return False, f"{side} gave a probability that is not a finite number ({bad[0]}) at probe row {row}", None
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


class S3(contextlib.AbstractContextManager):
    """The S3 server on the run's network (alias ``s3``), with a boto3 client from here."""

    def __init__(self, server: S3Server, network, keys: dict[str, str]) -> None:
        from testcontainers.core.container import DockerContainer

        self.container = DockerContainer(server.image).with_command(server.command).with_network(network) \
            .with_network_aliases("s3").with_exposed_ports(9000)
        for k, v in {**server.env, **keys}.items():
            self.container.with_env(k, v)
        self.keys = keys

    def __enter__(self) -> "S3":
        self.container.start()
        c = self.container
        self.client = boto3.client("s3", endpoint_url=f"http://{c.get_container_host_ip()}:{c.get_exposed_port(9000)}",
                                   config=BotoConfig(retries={"max_attempts": 1}), region_name="us-east-1",
                                   aws_access_key_id=self.keys["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=self.keys["AWS_SECRET_ACCESS_KEY"])
        _until(lambda: self.client.list_buckets(), 60, "the S3 server did not answer")
        return self

    def __exit__(self, *exc) -> None:
        self.container.stop()

    def meta(self, name: str, version: str) -> dict:
        return json.loads(self.client.get_object(Bucket="cybersec-ml-models", Key=f"{name}/{version}/meta.json")
                          ["Body"].read())


class Trainer(contextlib.AbstractContextManager):
    """The notebook image, idle, with the scenario notebooks copied in; executes one at a time."""

    def __init__(self, image: str, network, env: dict[str, str], notebooks: Path) -> None:
        from testcontainers.core.container import DockerContainer

        self.container = DockerContainer(image).with_command(["sleep", "infinity"]).with_network(network)
        for k, v in env.items():
            self.container.with_env(k, v)
        self.notebooks = notebooks

    def __enter__(self) -> "Trainer":
        self.container.start()
        from imagekit.engine import Engine
        Engine.put(self.container.get_wrapped_container(), NOTEBOOKS, self.notebooks)  # no bind mount: remote engines
        return self

    def __exit__(self, *exc) -> None:
        self.container.stop()

    def train(self, name: str, s3: S3, version: str) -> Trained:
        started = time.monotonic()
        code, output = self.container.exec(["jupyter", "nbconvert", "--to", "notebook", "--execute", "--output-dir",
                                            "/tmp/executed", f"{NOTEBOOKS}/{name}.ipynb"])
        seconds = round(time.monotonic() - started, 1)
        if code != 0:
            return Trained(name, seconds, None, "notebook failed: " + _last_error(output.decode(errors="replace")))
        return Trained(name, seconds, s3.meta(name, version))


class Server(contextlib.AbstractContextManager):
    """The Ray image serving the published models with Ray Serve (its default command)."""

    def __init__(self, image: str, network, env: dict[str, str], models: dict[str, dict]) -> None:
        from testcontainers.core.container import DockerContainer

        self.container = DockerContainer(image).with_network(network).with_exposed_ports(8000) \
            .with_kwargs(shm_size="1g").with_env("IMAGEKIT_MODELS", json.dumps(models))
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

    def wait_ready(self, seconds: float) -> dict[str, str]:
        """Each model's load status, once the server knows them all."""
        logs = lambda: self.container.get_wrapped_container().logs()[-3000:].decode(errors="replace")  # noqa: E731
        return _until(lambda: _status(self.url, self.models), seconds, "Ray Serve did not come up", logs=logs)

    def serve(self, trained: Trained, status: str) -> Served:
        started = time.monotonic()
        if status != "loaded":
            return Served(False, f"could not load in ray: {status}", None, [], 0.0)
        r = requests.post(f"{self.url}/models/{trained.name}/predict", json={"instances": trained.meta["instances"]},
                          timeout=60)
        if r.status_code != 200:
            return Served(False, f"ray answered {r.status_code}: {r.text[:300]}", None, [], 0.0)
        ok, reason, diff = compare(trained.meta, r.json())
        return Served(ok, reason, diff, r.json().get("warnings", []), round(time.monotonic() - started, 2))

    def shutdown(self) -> None:
        self.container.exec(["serve", "shutdown", "-y"])


def run(notebook: str, ray: str, s3: S3Server, examples: Path, *, scenarios: tuple[str, ...] = SCENARIOS,
        on_line: Callable[[str], None] | None = None, timeout: float = 300) -> RoundtripReport:
    """Train every scenario in the notebook image, publish to S3, serve each model in the Ray image."""
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # the Ryuk image cannot be pulled everywhere
    from testcontainers.core.network import Network

    note = on_line or (lambda line: None)
    started = time.monotonic()
    version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    keys = {"AWS_ACCESS_KEY_ID": "imagekit", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
            "AWS_DEFAULT_REGION": "us-east-1"}
    inside = {**keys, "AWS_ENDPOINT_URL": "http://s3:9000"}
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(Network())
        note(f"starting {s3.description}")
        store = stack.enter_context(S3(s3, network, keys))
        for bucket in BUCKETS:
            store.client.create_bucket(Bucket=bucket)
        trainer = stack.enter_context(Trainer(notebook, network, {**inside, "IMAGEKIT_RUN": version}, examples))
        trained = {}
        for name in scenarios:
            note(f"training {name} in the notebook image")
            trained[name] = trainer.train(name, store, version)
        models = {n: {k: t.meta[k] for k in ("bucket", "key", "sha256")} for n, t in trained.items() if t.meta}
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
            s = server.serve(t, status[name])
            results.append(ScenarioResult(name, s.ok, s.reason, s.diff, s.warnings, t.seconds, s.seconds))
        note("shutting the Ray Serve deployment down")
        server.shutdown()
        report = RoundtripReport(s3_server=s3.description, version=version, scenarios=results,
                                 ray_startup_seconds=ray_startup, seconds=round(time.monotonic() - started, 1))
        store.client.put_object(Bucket="cybersec-ml-eval", Key=f"verify-compat/{version}/report.json",
                                Body=json.dumps(asdict(report), indent=1).encode())
        return report


def _status(base_url: str, models: dict) -> dict | None:
    try:
        r = requests.get(f"{base_url}/status", timeout=2)
    except requests.RequestException:
        return None
    found = r.json().get("models", {}) if r.status_code == 200 else {}
    return found if set(found) >= set(models) else None


def _until(probe, seconds: float, what: str, logs=None):
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
    lines = [line for line in output.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or ["no output"])[-1][:400]

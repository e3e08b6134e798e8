"""Round trip with Testcontainers: notebooks train and publish to S3, Ray Serve loads and answers.

One Docker network holds an S3 server (MinIO where its image can be had, else the locally built
stand-in), the notebook image (executing the example notebooks headless) and the Ray image
(serving every published model). Every container and the network are removed afterwards, also
on failure and on Ctrl-C.
"""
from __future__ import annotations

import contextlib
import json
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
    """Labels equal and probabilities within TOLERANCE; the reason names the first difference."""
    if served.get("labels") != expected["labels"]:
        bad = [i for i, (a, b) in enumerate(zip(expected["labels"], served.get("labels") or [])) if a != b]
        return False, f"labels differ at probe rows {bad[:5]} (notebook vs ray)", None
    a, b = expected["probabilities"], served.get("probabilities")
    if b is None or len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b)):
        return False, "probabilities have a different shape", None
    diff = max((abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)), default=0.0)
    if diff > TOLERANCE:
        return False, f"probabilities differ by up to {diff:.3g} (> {TOLERANCE:g})", diff
    return True, "", diff


def run(notebook: str, ray: str, s3: S3Server, examples: Path, *, scenarios: tuple[str, ...] = SCENARIOS,
        on_line: Callable[[str], None] | None = None, timeout: float = 300) -> RoundtripReport:
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # the Ryuk image cannot be pulled everywhere
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network

    note = on_line or (lambda line: None)
    started = time.monotonic()
    version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    keys = {"AWS_ACCESS_KEY_ID": "imagekit", "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16),
            "AWS_DEFAULT_REGION": "us-east-1"}
    inside = {**keys, "AWS_ENDPOINT_URL": "http://s3:9000"}
    results: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(Network())
        note(f"starting {s3.description}")
        server = DockerContainer(s3.image).with_command(s3.command).with_network(network) \
            .with_network_aliases("s3").with_exposed_ports(9000)
        for k, v in {**s3.env, **keys}.items():
            server.with_env(k, v)
        stack.enter_context(server)
        client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{server.get_exposed_port(9000)}",
                              config=BotoConfig(retries={"max_attempts": 1}), **{k.lower(): v for k, v in keys.items()
                                                                                  if k != "AWS_DEFAULT_REGION"},
                              region_name="us-east-1")
        _until(lambda: client.list_buckets(), 60, "the S3 server did not answer")
        for bucket in BUCKETS:
            client.create_bucket(Bucket=bucket)

        trainer = DockerContainer(notebook).with_command(["sleep", "infinity"]).with_network(network) \
            .with_volume_mapping(str(examples), NOTEBOOKS, "ro")
        for k, v in {**inside, "IMAGEKIT_RUN": version}.items():
            trainer.with_env(k, v)
        stack.enter_context(trainer)
        models = {}
        for name in scenarios:
            note(f"training {name} in the notebook image")
            t0 = time.monotonic()
            code, output = trainer.exec(["jupyter", "nbconvert", "--to", "notebook", "--execute", "--output-dir",
                                         "/tmp/executed", f"{NOTEBOOKS}/{name}.ipynb"])
            results[name] = {"train_seconds": round(time.monotonic() - t0, 1)}
            if code != 0:
                results[name]["reason"] = "notebook failed: " + _last_error(output.decode(errors="replace"))
                continue
            meta = json.loads(client.get_object(Bucket="cybersec-ml-models",
                                                Key=f"{name}/{version}/meta.json")["Body"].read())
            results[name]["meta"] = meta
            models[name] = {"bucket": meta["bucket"], "key": meta["key"], "sha256": meta["sha256"]}

        note("starting Ray Serve in the ray image")
        t0 = time.monotonic()
        server_c = DockerContainer(ray).with_network(network).with_exposed_ports(8000).with_kwargs(shm_size="1g") \
            .with_env("IMAGEKIT_MODELS", json.dumps(models))
        for k, v in inside.items():
            server_c.with_env(k, v)
        stack.enter_context(server_c)
        base_url = f"http://127.0.0.1:{server_c.get_exposed_port(8000)}"
        status = _until(lambda: _status(base_url, models), timeout, "Ray Serve did not come up",
                        logs=lambda: server_c.get_wrapped_container().logs()[-3000:].decode(errors="replace"))
        ray_startup = time.monotonic() - t0
        for name in scenarios:
            entry = results[name]
            if "reason" in entry:
                continue
            t0 = time.monotonic()
            if status[name] != "loaded":
                entry["reason"] = f"could not load in ray: {status[name]}"
                continue
            note(f"serving {name}")
            r = requests.post(f"{base_url}/models/{name}/predict", json={"instances": entry["meta"]["instances"]},
                              timeout=60)
            if r.status_code != 200:
                entry["reason"] = f"ray answered {r.status_code}: {r.text[:300]}"
                continue
            ok, reason, diff = compare(entry["meta"], r.json())
            entry.update(ok=ok, reason=reason, diff=diff, warnings=r.json().get("warnings", []),
                         serve_seconds=round(time.monotonic() - t0, 2))
        note("shutting the Ray Serve deployment down")
        server_c.exec(["serve", "shutdown", "-y"])
        report = RoundtripReport(
            s3_server=s3.description, version=version, ray_startup_seconds=round(ray_startup, 1),
            seconds=round(time.monotonic() - started, 1),
            scenarios=[ScenarioResult(name=n, ok=results[n].get("ok", False), reason=results[n].get("reason", ""),
                                      max_probability_diff=results[n].get("diff"),
                                      warnings=results[n].get("warnings", []),
                                      train_seconds=results[n]["train_seconds"],
                                      serve_seconds=results[n].get("serve_seconds", 0.0)) for n in scenarios])
        client.put_object(Bucket="cybersec-ml-eval", Key=f"verify-compat/{version}/report.json",
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

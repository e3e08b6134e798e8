"""verify-compat: static alignment from inside both images, a Testcontainers round trip, a record."""
from __future__ import annotations

import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from imagekit import attest, build, forward, lock, redact, runtime
from imagekit.config import Config
from imagekit.digests import sha256_file
from imagekit.engine import Engine
from imagekit.errors import ConfigError, PreconditionError, UsageError, infrastructure
from imagekit.oci import Reference
from imagekit.registry import Registry
from imagekit.settings import VerifySettings
from imagekit.verify import mlflowstore, record, roundtrip, s3store, static, stored




@dataclass(frozen=True)
class Subject:
    role: str  # "notebook" or "ray"
    ref: str  # as given or as built
    repository: str  # <project>/<repository> in the registry, "" when not pushed
    digest: str  # the registry manifest digest, "" when not pushed


@dataclass(frozen=True)
class VerifyReport:
    notebook: Subject
    ray: Subject
    static: static.StaticReport
    roundtrip: roundtrip.RoundtripReport
    others: list[Subject] = field(default_factory=list)  # the rest of the verified set (verify.images)
    lifecycle: runtime.Item | None = None  # the notebook deploys to a head through Ray Client
    recorded: list[str] = field(default_factory=list)  # "<repo>:<record tag>" written
    record_note: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every check that ran passed, and something beyond the static one ran."""
        trip = self.roundtrip.ok or (not self.roundtrip.scenarios and self.lifecycle is not None)
        return self.static.ok and trip and (self.lifecycle is None or self.lifecycle.ok)


def _built(cfg: Config, engine: Engine, name: str, on_line: Callable[[str], None]) -> build.BuiltImage:
    """The image of imagekit.toml named ``name``, built now (from cache when unchanged)."""
    name = cfg.image(name).name  # a ConfigError when imagekit.toml has no such image
    return next(i for i in build.build(cfg, engine, names=[name], on_line=on_line).images if i.name == name)


def s3_server(cfg: Config, engine: Engine, on_line: Callable[[str], None]) -> s3store.S3Server:
    """MinIO where its image is present or can be pulled; else the locally built stand-in."""
    minio = cfg.verify.minio_image
    if minio and (engine.image(minio) or engine.pull(minio)):
        return s3store.S3Server(minio, f"MinIO ({minio})", ["server", "/data", "--address", ":9000"],
                                  {"MINIO_ROOT_USER": "imagekit"})
    standin = cfg.image(cfg.verify.s3_standin)
    on_line(f"{minio} cannot be had here; using the stand-in image '{standin.name}'")
    built = _built(cfg, engine, standin.name, on_line)
    return s3store.S3Server(built.image_id, f"stand-in {standin.repository}:{built.tags[0]} ({minio} unavailable)",
                              [], {})


def mlflow_for(cfg: Config, engine: Engine, url: str | None, scenarios: tuple[str, ...],
               on_line: Callable[[str], None]) -> mlflowstore.Tracking | str | None:
    """The tracking server MLflow scenarios use: the team's (--mlflow-uri / verify.mlflow_uri, asked
    whether it answers), else the built `mlflow` image when a scenario imports mlflow (built now), else none."""
    url = url or cfg.verify.mlflow_uri
    folder = cfg.path(cfg.verify.notebooks)
    used = any(mlflowstore.uses_mlflow(folder / f"{s}.ipynb") for s in scenarios)
    if url:
        team = mlflowstore.tracking(url, cfg.env)
        if used:
            mlflowstore.preflight(team)  # before any container starts
        return team
    if not used:
        return None
    return _built(cfg, engine, cfg.verify.mlflow_server, on_line).image_id


def scenarios_of(cfg: Config) -> tuple[str, ...]:
    """Every scenario: a notebook of verify.notebooks each (by file stem), then the lifecycle."""
    folder = cfg.path(cfg.verify.notebooks)
    if not folder.is_dir():
        raise ConfigError(f"scenario folder not found: {folder}", key="verify.notebooks",
                          source=cfg.origins.get("verify.notebooks"))
    return (*roundtrip.discover(folder), runtime.LIFECYCLE)


def buckets(cfg: Config) -> s3store.Buckets:
    return s3store.Buckets(cfg.verify.models_bucket, cfg.verify.eval_bucket, tuple(cfg.verify.buckets))


def endpoint(cfg: Config, url: str) -> s3store.Endpoint:
    """The user's S3 (--s3-endpoint / verify.s3_endpoint), keys from AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY as the platform's flows read them."""
    if "://" not in url:
        raise UsageError(f"--s3-endpoint {url!r} is not a URL", option="--s3-endpoint",
                         hint="e.g. https://minio.example.org or http://127.0.0.1:9000")
    access, secret = cfg.env.get("AWS_ACCESS_KEY_ID", ""), cfg.env.get("AWS_SECRET_ACCESS_KEY", "")
    if not (access and secret):
        raise ConfigError(f"the S3 endpoint {url} needs keys: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    redact.register(secret)
    forward.require_local(url, "the S3 endpoint")  # said before any work
    return s3store.Endpoint(url.rstrip("/"), access, secret)


def _store(cfg: Config, engine: Engine, s3_endpoint: str | None, note) -> s3store.S3Server | s3store.Endpoint:
    url = s3_endpoint or cfg.verify.s3_endpoint
    return endpoint(cfg, url) if url else s3_server(cfg, engine, note)


def verified_set(cfg: Config) -> list[str]:
    """The images verify-compat proves together and promotion moves together (verify.images)."""
    shared = {i.name for i in cfg.images if i.shared}
    names = list(cfg.verify.verified_set)
    key = "verify.images" if cfg.verify.images else "verify.trainer and verify.server"
    for name in names:
        if name not in shared:
            raise ConfigError(f"'{name}' is not an image of this project (shared images: {', '.join(sorted(shared))})",
                              key=key, source=cfg.origins.get("verify.images"),
                              hint="name the images verify-compat proves together in verify.images")
    return names


def built_ref(cfg: Config, name: str, option: str) -> str:
    """The image id of ``name`` in the last build: the default of ``option`` (e.g. --ray-image)."""
    entry = next((i for i in build.load_result(cfg).images if i.name == name), None)
    if entry is None:
        raise PreconditionError(f"no built '{name}' image in {build.result_path(cfg)}",
                                hint=f"run `imagekit build`, or pass {option} REF")
    return entry.image_id


def _subject(cfg: Config, engine: Engine, role: str, ref: str | None, name: str | None = None) -> Subject:
    if ref is None:
        ref = built_ref(cfg, name or (cfg.verify.trainer if role == "notebook" else cfg.verify.server),
                        f"--{role}-image")
    info = engine.image(ref)
    if info is None and not engine.pull(ref):
        raise PreconditionError(f"image {ref} is neither in the engine nor pullable",
                                hint="build it (`imagekit build`) or pass a reference the engine can pull")
    info = info or engine.image(ref)
    host = Registry.from_config(cfg).host
    pushed = [Reference.parse(d) for d in info.repo_digests]
    found = next((r for r in pushed if r.registry == host and r.repository.startswith(f"{cfg.first_project}/")), None)
    return Subject(role=role, ref=ref, repository=found.repository if found else "", digest=found.digest if found else "")


@infrastructure("verify-compat")
def verify_compat(cfg: Config, engine: Engine, *, notebook: str | None = None, ray: str | None = None,
                  scenarios: tuple[str, ...] | None = None, write_record: bool = True, s3_endpoint: str | None = None,
                  mlflow_uri: str | None = None, on_line: Callable[[str], None] | None = None) -> VerifyReport:
    started = time.monotonic()
    note = on_line or (lambda line: None)
    every = scenarios_of(cfg)
    scenarios = scenarios or every
    unknown = [s for s in scenarios if s not in every]
    if unknown:
        raise UsageError(f"unknown scenario {', '.join(unknown)}", option="--scenario",
                         hint=f"the scenarios are the notebooks in {cfg.verify.notebooks} (and {runtime.LIFECYCLE}): "
                              f"{', '.join(every)}")
    store = _store(cfg, engine, s3_endpoint, note)
    trips = tuple(s for s in scenarios if s != runtime.LIFECYCLE)
    tracking = mlflow_for(cfg, engine, mlflow_uri, trips, note)
    key = attest.signing_key(cfg) if write_record else None  # a bad key is said before an hour of work
    members = verified_set(cfg)
    missing = [n for n in (cfg.verify.trainer, cfg.verify.server) if n not in members]
    if missing:
        raise ConfigError(f"the verified set must hold the trainer and the server ({', '.join(missing)} missing)",
                          key="verify.images", source=cfg.origins.get("verify.images"))
    trainer, server = _subject(cfg, engine, "notebook", notebook), _subject(cfg, engine, "ray", ray)
    others = [_subject(cfg, engine, n, None, n) for n in members if n not in (cfg.verify.trainer, cfg.verify.server)]
    lk = lock.shared_lock(cfg)
    note("static alignment: asking the images what they hold")
    aligned = static.compare(cfg, lk, static.inspect(engine, trainer.ref), static.inspect(engine, server.ref),
                             [static.inspect(engine, o.ref) for o in others])
    trip = roundtrip.run(trainer.ref, server.ref, store, cfg.path(cfg.verify.notebooks), scenarios=trips,
                         buckets=buckets(cfg), mlflow=tracking, on_line=note,
                         trained_in={"IMAGEKIT_IMAGE": trainer.digest or trainer.ref, "IMAGEKIT_LOCK": lk.digest},
                         ) if trips else roundtrip.RoundtripReport("", "", [], 0.0, 0.0)
    life = (runtime.deploy_from_notebook(engine, trainer.ref, server.ref, cfg.path(cfg.verify.lifecycle), note)
            if runtime.LIFECYCLE in scenarios else None)
    report = VerifyReport(notebook=trainer, ray=server, static=aligned, roundtrip=trip, others=others, lifecycle=life)
    recorded = []
    why = not_recorded(report, write_record=write_record, complete=set(scenarios) == set(every), key=key)
    if not why:
        reg = Registry.from_config(cfg)
        named = {cfg.verify.trainer: trainer, cfg.verify.server: server, **{o.role: o for o in others}}
        subjects = {name: (s.repository, s.digest) for name, s in named.items()}  # by image name: the gate's key
        folder = cfg.path(cfg.verify.notebooks)
        deployed = {nb.stem: sha256_file(nb) for nb in sorted(cfg.path(cfg.verify.lifecycle).glob("*.ipynb"))}
        envelope = attest.sign(attest.statement(
            subjects, passed=True, lock=lk.digest, python=aligned.ray.python, s3_server=trip.s3_server,
            scenarios={**{s.name: {"passed": True, "max_probability_diff": s.max_probability_diff,
                                   "notebook_sha256": sha256_file(folder / f"{s.name}.ipynb")}
                          for s in trip.scenarios},
                       runtime.LIFECYCLE: {"passed": True, "detail": life.detail, "notebooks": deployed}},
            counts={"round_trip": len(trip.scenarios), "lifecycle": len(deployed)}), key)
        for subject in (trainer, server, *others):
            recorded.append(f"{subject.repository}@{record.write(reg, subject.repository, subject.digest, envelope)}")
    return VerifyReport(notebook=trainer, ray=server, static=aligned, roundtrip=trip, others=others, lifecycle=life,
                        recorded=recorded, record_note=why, seconds=round(time.monotonic() - started, 1))


def not_recorded(report: VerifyReport, *, write_record: bool, complete: bool, key) -> str:
    """Why this run is not signed and attached ("" when it is): only a whole, passing run of at least
    one model scenario, of pushed images, with a signing key, vouches for the set."""
    if not report.ok:
        return "not recorded: a check failed"
    if not write_record:
        return "not recorded: --no-record"
    if not all(s.digest for s in (report.notebook, report.ray, *report.others)):
        return "not recorded: push the images first (`imagekit push`), records are kept next to their digests"
    if not complete:
        return "not recorded: only a subset of the scenarios ran"
    if not report.roundtrip.scenarios:
        return ("not recorded: no model scenario ran (verify.notebooks holds no notebook): a signature must say "
                "that models trained in the notebook image serve identically in the Ray image")
    if key is None:
        return ("not recorded: no signing key (set IMAGEKIT_TRUST_SIGNING_KEY to the private key's PEM or its file; "
                "docs/attestations.md, 'Signing keys')")
    return ""


def required_scenarios(cfg: Config) -> list[tuple[str, str]]:
    """What the gate requires an attestation to cover: (scenario, pinned notebook sha256 or "").
    trust.required_scenarios ("name" or "name@sha256:<hex>"), else every notebook of verify.notebooks
    as imagekit.toml commits it (an IMAGEKIT_VERIFY_NOTEBOOKS pointing elsewhere does not lower it)."""
    entries = cfg.trust.required_scenarios
    if not entries:
        committed = tomllib.loads(Path(cfg.source).read_text()).get("verify", {}).get("notebooks",
                                                                                      VerifySettings.notebooks)
        folder = cfg.path(committed)
        entries = roundtrip.discover(folder) if folder.is_dir() else ()
    found = []
    for entry in entries:
        name, _, digest = entry.partition("@")
        if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ConfigError(f"{entry!r}: pin a notebook as name@sha256:<64 hex digits>", key="trust.required_scenarios",
                              source=cfg.origins.get("trust.required_scenarios"))
        found.append((name, digest.removeprefix("sha256:")))
    return found


@infrastructure("verify-stored")
def verify_stored(cfg: Config, engine: Engine, *, ray: str | None = None, prefix: str = "",
                  s3_endpoint: str | None = None, ray_address: str | None = None, batch_size: int | None = None,
                  recheck: bool = False, on_line: Callable[[str], None] | None = None) -> stored.StoredReport:
    """Every model already in the models bucket (under ``prefix``) with a meta.json, checked in the
    candidate Ray image: the regression check before a new Ray image is promoted."""
    note = on_line or (lambda line: None)
    batch_size = batch_size if batch_size is not None else cfg.verify.stored_batch_size
    if batch_size < 1:
        raise UsageError(f"a batch size of {batch_size}: it must be at least 1", option="--batch-size",
                         hint="models per task; 100 keeps one process under about 1 GiB with the example models")
    address = ray_address if ray_address is not None else cfg.verify.ray_address
    if address and not re.fullmatch(r"ray://[^/\s:]+:\d+", address):
        raise UsageError(f"--ray-address {address!r} is not a Ray Client address", option="--ray-address",
                         hint="ray://HOST:10001: the head's client server (kubectl port-forward svc/<head> 10001)")
    store = _store(cfg, engine, s3_endpoint, note)
    server = _subject(cfg, engine, "ray", ray)
    return stored.check(server.ref, engine.image(server.ref).id, store,
                        prefix=prefix, buckets=buckets(cfg), batch_size=batch_size,
                        recheck=recheck, cluster=address, cluster_s3=cfg.verify.cluster_s3_endpoint, on_line=note)


def baseline_ray(cfg: Config) -> str:
    """The Ray image `current` in the last environment: what prod serves today."""
    from imagekit import promote

    env = cfg.environments[-1]
    reg = promote.registry_for(cfg, env)
    digest = promote.currents(cfg, reg, env, [cfg.verify.server])[cfg.verify.server]
    if not digest:
        raise PreconditionError(f"{env.name} serves no Ray image yet (nothing under its current tag)",
                                hint="pass --baseline-image REF: the Ray image to compare the candidate with")
    return f"{reg.host}/{env.project}/{cfg.image(cfg.verify.server).repository}@{digest}"


@infrastructure("verify-stored")
def verify_mlflow(cfg: Config, engine: Engine, *, ray: str | None = None, baseline: str | None = None,
                  mlflow_uri: str | None = None, models: tuple[str, ...] = (), s3_endpoint: str | None = None,
                  on_line: Callable[[str], None] | None = None) -> mlflowstore.RegistryReport:
    """Every registered MLflow model version (or those ``models`` names: NAME, NAME@ALIAS,
    NAME/VERSION) in the candidate Ray image and in the baseline one (default: what prod serves)."""
    url = mlflow_uri or cfg.verify.mlflow_uri
    if not url:
        raise UsageError("--model needs an MLflow tracking server", option="--mlflow-uri",
                         hint="pass --mlflow-uri URL or set verify.mlflow_uri")
    bad = [m for m in models if not re.fullmatch(r"[^@/\s]+(@[\w-]+|/\d+)?", m)]
    if bad:
        raise UsageError(f"{', '.join(map(repr, bad))}: name a model as NAME, NAME@ALIAS or NAME/VERSION",
                         option="--model")
    mlflow = mlflowstore.tracking(url, cfg.env)
    mlflowstore.preflight(mlflow)  # before any image is pulled or started
    s3_env, s3_url = {}, s3_endpoint or cfg.verify.s3_endpoint
    if s3_url:  # for a server that does not proxy artifacts
        ep = endpoint(cfg, s3_url)
        s3_env = {"AWS_ACCESS_KEY_ID": ep.access_key, "AWS_SECRET_ACCESS_KEY": ep.secret_key,
                  "MLFLOW_S3_ENDPOINT_URL": ep.url}
    candidate = _subject(cfg, engine, "ray", ray)
    base = _subject(cfg, engine, "ray", baseline or baseline_ray(cfg))
    return mlflowstore.check_registry(candidate.ref, base.ref, mlflow, list(models), s3_env=s3_env, on_line=on_line)

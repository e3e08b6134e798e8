"""verify-compat: static alignment from inside both images, the round trip, the lifecycle, and the
signed attestation of the verified set."""
from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from imagekit import attest, facts, lock, record, runtime
from imagekit.config import Config
from imagekit.engine import Engine
from imagekit.errors import ConfigError, ImagekitError, UsageError, infrastructure
from imagekit.inventory import registry_for
from imagekit.verify import roundtrip, s3store, static, tracking
from imagekit.verify.policy import LIFECYCLE, not_recorded, scenarios_of, verified_set
from imagekit.verify.subjects import Subject, built, subject


@dataclass(frozen=True)
class VerifyReport:
    notebook: Subject
    ray: Subject
    static: static.StaticReport
    roundtrip: roundtrip.RoundtripReport
    others: list[Subject] = field(default_factory=list)  # the rest of the verified set (verify.images)
    lifecycle: runtime.Item | None = None  # the notebook deploys to a head through Ray Client
    recorded: list[str] = field(default_factory=list)  # "<repo>@<record digest>" written
    record_note: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every check that ran passed, and something beyond the static one ran."""
        trip = self.roundtrip.ok or (not self.roundtrip.scenarios and self.lifecycle is not None)
        return self.static.ok and trip and (self.lifecycle is None or self.lifecycle.ok)


def mlflow_for(cfg: Config, engine: Engine, scenarios: tuple[str, ...], on_line: Callable[[str], None]) -> str | None:
    """The image of the tracking server the run's MLflow scenarios log into (built now), when one
    imports mlflow: a server of the run's own, never the team's (verify.mlflow_uri is verify-stored's)."""
    folder = cfg.path(cfg.verify.notebooks)
    if not any(tracking.uses_mlflow(folder / f"{s}.ipynb") for s in scenarios):
        return None
    return built(cfg, engine, cfg.verify.mlflow_server, on_line).image_id


def _sign(cfg: Config, report: VerifyReport, lock_digest: str, key) -> list[str]:
    """The statement of the verified set, signed and attached to each image's digest in both layouts."""
    reg = registry_for(cfg, cfg.environments[0] if cfg.environments else None)
    subjects = {cfg.verify.trainer: report.notebook, cfg.verify.server: report.ray, **{o.role: o for o in report.others}}
    trip, life = report.roundtrip, report.lifecycle
    envelope = attest.sign(attest.statement(
        {name: (s.repository, s.digest) for name, s in subjects.items()},  # by image name: the gate's key
        passed=True, lock=lock_digest, python=report.static.ray.python, s3_server=trip.s3_server,
        scenarios={**{s.name: {"passed": True, "max_probability_diff": s.max_probability_diff,
                               "notebook_sha256": s.notebook_sha256} for s in trip.scenarios},
                   LIFECYCLE: {"passed": True, "detail": life.detail, "notebooks": life.notebooks}},
        counts={"round_trip": len(trip.scenarios), "lifecycle": len(life.notebooks)}), key)
    return record.together(*(lambda s=s: f"{s.repository}@{record.write(reg, s.repository, s.digest, envelope)}"
                             for s in subjects.values()))


@infrastructure("verify-compat")
def verify_compat(cfg: Config, engine: Engine, *, notebook: str | None = None, ray: str | None = None,
                  scenarios: tuple[str, ...] | None = None, write_record: bool = True, s3_endpoint: str | None = None,
                  on_line: Callable[[str], None] | None = None) -> VerifyReport:
    started = time.monotonic()
    note = on_line or (lambda line: None)
    every = scenarios_of(cfg)
    scenarios = scenarios or every
    unknown = [s for s in scenarios if s not in every]
    if unknown:
        raise UsageError(f"unknown scenario {', '.join(unknown)}", option="--scenario",
                         hint=f"the scenarios are the notebooks in {cfg.verify.notebooks} (and {LIFECYCLE}): "
                              f"{', '.join(every)}")
    store = s3store.store_for(cfg, engine, s3_endpoint, note)
    trips = tuple(s for s in scenarios if s != LIFECYCLE)
    mlflow = mlflow_for(cfg, engine, trips, note)
    key = attest.signing_key(cfg) if write_record else None  # a bad key is said before an hour of work
    members = verified_set(cfg)
    missing = [n for n in (cfg.verify.trainer, cfg.verify.server) if n not in members]
    if missing:
        raise ConfigError(f"the verified set must hold the trainer and the server ({', '.join(missing)} missing)",
                          key="verify.images", source=cfg.origins.get("verify.images"))
    trainer, server = subject(cfg, engine, "notebook", notebook), subject(cfg, engine, "ray", ray)
    others = [subject(cfg, engine, n, None, n) for n in members if n not in (cfg.verify.trainer, cfg.verify.server)]
    lk = lock.shared_lock(cfg)
    aside = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="verify")
    with contextlib.ExitStack() as stack:  # the static check and the lifecycle need nothing of the round trip
        # on a failure or an interrupt, their containers are gone before this returns: the lifecycle's
        # head is removed first (its notebooks end with it), then the static check's questions are waited for
        stack.callback(aside.shutdown, wait=True, cancel_futures=True)
        life = None
        if LIFECYCLE in scenarios:
            deploy = stack.enter_context(runtime.lifecycle_head(engine, server.ref, trainer.ref, note))
            life = aside.submit(deploy, cfg.path(cfg.verify.lifecycle))
        note("static alignment: asking the images what they hold")
        kept = cfg.cache_dir / facts.KEPT
        aligned = aside.submit(lambda: static.compare(cfg, lk, *[facts.inspect(engine, s.ref, cache=kept) for s in (
            trainer, server)], [facts.inspect(engine, o.ref, cache=kept) for o in others]))
        try:
            trip = roundtrip.run(engine, trainer.ref, server.ref, store, cfg.path(cfg.verify.notebooks),
                                 scenarios=trips, buckets=s3store.buckets(cfg), mlflow=mlflow, on_line=note,
                                 trained_in={"IMAGEKIT_IMAGE": trainer.digest or trainer.ref, "IMAGEKIT_LOCK": lk.digest},
                                 ) if trips else roundtrip.RoundtripReport("", "", [], 0.0, 0.0)
        except ImagekitError:
            aligned.result()  # an image that cannot be asked what it holds: that is said first
            raise
        aligned, life = aligned.result(), life.result() if life else None
    report = VerifyReport(notebook=trainer, ray=server, static=aligned, roundtrip=trip, others=others, lifecycle=life)
    why = not_recorded(report, write_record=write_record, complete=set(scenarios) == set(every), key=key)
    if not why:
        note("signing the attestation of the verified set")
    recorded = [] if why else _sign(cfg, report, lk.digest, key)
    return VerifyReport(notebook=trainer, ray=server, static=aligned, roundtrip=trip, others=others, lifecycle=life,
                        recorded=recorded, record_note=why, seconds=round(time.monotonic() - started, 1))

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from imagekit.cli import render
from imagekit.cli._common import JSON, JUNIT, REPORT, artifacts, command, emit, escape, load, out, progress
from imagekit.engine import Engine
from imagekit.errors import UsageError
from imagekit.verify.compat import verify_compat
from imagekit.verify.mlflowstore import note_of, verify_mlflow
from imagekit.verify.stored import verify_stored

S3_ENDPOINT = typer.Option(None, "--s3-endpoint", help="an S3/MinIO of your own instead of starting one "
                                                       "(keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
MLFLOW_URI = typer.Option(None, "--mlflow-uri", help="the team's MLflow tracking server (default: verify.mlflow_uri; "
                                                     "credentials: MLFLOW_TRACKING_USERNAME/_PASSWORD or "
                                                     "MLFLOW_TRACKING_TOKEN)")
def register(app: typer.Typer) -> None:
    command(app, "verify-compat", verify)
    command(app, "verify-stored", stored)


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def _cases(scenarios) -> list[tuple[str, bool, str, float]]:
    return [(s.name, s.ok, s.reason, s.train_seconds + s.serve_seconds) for s in scenarios]


def stored(ctx: typer.Context, prefix: str = typer.Argument("", help="only models under this prefix "
                                                                     "(<scenario>/ or <scenario>/<version>/)"),
           ray_image: Optional[str] = typer.Option(None, help="the candidate Ray image (default: the one just built)"),
           s3_endpoint: Optional[str] = S3_ENDPOINT,
           ray_address: Optional[str] = typer.Option(None, help="check on a Ray cluster started from the candidate "
                                                                "image (ray://HOST:10001) instead of a Ray of its own"),
           batch_size: Optional[int] = typer.Option(None, help="models per task, the memory bound of one process "
                                                               "(default: verify.stored_batch_size, 100)"),
           recheck: bool = typer.Option(False, "--recheck", help="check every model again (outcomes kept for this image ignored)"),
           mlflow_uri: Optional[str] = MLFLOW_URI,
           model: Optional[List[str]] = typer.Option(None, "--model", help="with MLflow: only this registered model, "
                                                                           "as NAME, NAME@ALIAS or NAME/VERSION"),
           baseline_image: Optional[str] = typer.Option(None, help="with MLflow: the Ray image the candidate must "
                                                                   "predict as (default: `current` of the last "
                                                                   "environment, what prod serves)"),
           junit: Optional[Path] = JUNIT, report_file: Optional[Path] = REPORT, as_json: bool = JSON) -> None:
    """Check stored models (S3 or MLflow) in a Ray image.

    The regression check before a new Ray image is promoted. Every model published in the models
    bucket (each with a meta.json) is checked in the candidate Ray image: where its training
    environment differs from the image's, whether it loads, whether it predicts what the notebook
    predicted; exit 1 names every model that breaks. Any number of models: batches of --batch-size,
    each in a fresh process; outcomes are kept in the eval bucket per model and image, so a re-run
    checks only what is new (--recheck: everything); with --ray-address the batches run on a Ray
    cluster. With --mlflow-uri (or --model), MLflow's registry instead: every registered version in
    the candidate and in a baseline Ray image (default: what the last environment serves), its
    requirements compared, loaded with mlflow.pyfunc, and its input example predicted as the
    baseline predicts it.

    Example: imagekit verify-stored --s3-endpoint http://127.0.0.1:9000
    Example: imagekit verify-stored --mlflow-uri http://127.0.0.1:5000 --json
    """
    cfg = load(ctx)
    if mlflow_uri or model:
        return _mlflow_stored(ctx, cfg, ray_image, baseline_image, mlflow_uri, tuple(model or ()), s3_endpoint,
                              junit, report_file, as_json)
    with progress(ctx, "verify-stored") as note:
        report = verify_stored(cfg, Engine.connect(), ray=ray_image, prefix=prefix, s3_endpoint=s3_endpoint,
                               ray_address=ray_address, batch_size=batch_size, recheck=recheck, on_line=note)
    artifacts(ctx, report, [(m.name, m.ok, m.reason, m.seconds) for m in report.models], junit, report_file)
    if as_json:
        emit(ctx, report, True, "", ok=report.ok)
    else:
        shown = report.models if len(report.models) <= 50 else [m for m in report.models if not m.ok]
        render.table("model", [render.Row(m.name, m.ok, {
            "fingerprint": "same" if not m.fingerprint else "differs", "loads": _yes(m.loaded),
            "predictions": "same" if m.same_predictions else "differ", "node": m.node + (" (kept)" if m.reused else "")},
            "; ".join(m.fingerprint) or m.reason) for m in shown])
        failing = sum(not m.ok for m in report.models)
        if len(shown) < len(report.models):
            out.print(f"(the {len(shown)} failing models of {len(report.models)} shown; --json or --junit for all)")
        out.print(f"{len(report.models)} models ({report.checked} checked now, {report.reused} kept from earlier "
                  f"runs with this image), {failing} failing; on {len(report.nodes)} node(s); S3: "
                  f"{escape(report.s3_server)}; total {report.seconds:.0f} s")
    raise typer.Exit(0 if report.ok else 1)


def _mlflow_stored(ctx, cfg, ray_image, baseline_image, mlflow_uri, models, s3_endpoint, junit, report_file,
                   as_json) -> None:
    with progress(ctx, "verify-stored") as note:
        report = verify_mlflow(cfg, Engine.connect(), ray=ray_image, baseline=baseline_image, mlflow_uri=mlflow_uri,
                               models=models, s3_endpoint=s3_endpoint, on_line=note)
    artifacts(ctx, report, [(m.candidate.name, m.ok, m.candidate.reason, m.candidate.seconds) for m in report.models],
               junit, report_file)
    if as_json:
        emit(ctx, report, True, "", ok=report.ok)
    else:
        render.table("model version", [render.Row(m.candidate.name, m.ok, {
            "aliases": ",".join(m.aliases), "requirements": "same" if not m.candidate.differences else "differ",
            "loads": _yes(m.candidate.loaded), "as baseline": ("same" if m.candidate.same_predictions else "differ")
            if m.candidate.example and not m.baseline_error else "-"}, m.candidate.reason or m.note)
            for m in report.models])
        out.print(f"{len(report.models)} model versions, {sum(not m.ok for m in report.models)} failing; candidate "
                  f"{escape(report.ray_image)}, baseline {escape(report.baseline_image)}; MLflow "
                  f"{escape(report.tracking)}; total {report.seconds:.0f} s")
    raise typer.Exit(0 if report.ok else 1)


def verify(ctx: typer.Context,
           notebook_image: Optional[str] = typer.Option(None, help="notebook image (default: the one just built)"),
           ray_image: Optional[str] = typer.Option(None, help="Ray image (default: the one just built)"),
           scenario: Optional[List[str]] = typer.Option(None, help="run only these: a notebook's file stem in "
                                                                   "verify.notebooks, or lifecycle"),
           record: bool = typer.Option(True, help="on success, attach a signed attestation to each image "
                                                  "(key: IMAGEKIT_TRUST_SIGNING_KEY)"),
           s3_endpoint: Optional[str] = S3_ENDPOINT,
           mlflow_uri: Optional[str] = typer.Option(None, "--mlflow-uri", hidden=True),
           junit: Optional[Path] = JUNIT, report_file: Optional[Path] = REPORT, as_json: bool = JSON) -> None:
    """Prove notebook-trained models serve alike in Ray.

    Static: Python and every installed distribution, file by file, from inside both images, against
    each other and the lock. Round trip: every notebook of verify.notebooks is a scenario; it trains in
    the notebook image and publishes its model to S3 (MinIO, the stand-in, or --s3-endpoint); Ray Serve
    in the Ray image loads each (sha256 and training environment checked, warnings as errors) and must
    answer with the same labels and probabilities (numbers to 1e-9). A notebook that imports mlflow may
    log with the plain MLflow API instead, into a tracking server of the run's own (never the team's:
    a verification must not move what the team serves; verify-stored --mlflow-uri checks the team's
    registry). Then the
    lifecycle: a notebook deploys to a Ray head through Ray Client. On success a signed in-toto
    attestation of the verified set is attached to each pushed image's digest (signing key:
    IMAGEKIT_TRUST_SIGNING_KEY); promotion requires it. Exit 0 when all passed, 1 when a check failed,
    2 when it could not run.

    Example: imagekit verify-compat --scenario iris --no-record
    """
    if mlflow_uri:
        raise UsageError("verify-compat logs its MLflow scenarios into a tracking server of the run's own, never the "
                         "team's: registering and moving aliases there would change what the team serves",
                         option="--mlflow-uri", hint="check the team's registry with `imagekit verify-stored "
                                                     "--mlflow-uri URL` (read only)")
    cfg = load(ctx)
    with progress(ctx, "verify-compat") as note:
        report = verify_compat(cfg, Engine.connect(), notebook=notebook_image, ray=ray_image,
                               scenarios=tuple(scenario) if scenario else None, write_record=record,
                               s3_endpoint=s3_endpoint, on_line=note)
    static_case = ("static alignment", report.static.ok, "; ".join(report.static.differences), 0.0)
    life = [("lifecycle", report.lifecycle.ok, report.lifecycle.detail, report.lifecycle.seconds)] \
        if report.lifecycle else []
    artifacts(ctx, report, [static_case, *_cases(report.roundtrip.scenarios), *life], junit, report_file)
    if as_json:
        emit(ctx, report, True, "", ok=report.ok)
    else:
        _render(report)
    raise typer.Exit(0 if report.ok else 1)


def _render(report) -> None:
    out.print(f"notebook {escape(report.notebook.repository or report.notebook.ref)}"
              f"{'@' + report.notebook.digest if report.notebook.digest else ''}")
    out.print(f"ray      {escape(report.ray.repository or report.ray.ref)}"
              f"{'@' + report.ray.digest if report.ray.digest else ''}")
    static = report.static
    rows = [render.Row("static alignment", static.ok, {}, f"Python {static.notebook.python} / {static.ray.python}, "
                       f"{len(static.notebook.packages)} / {len(static.ray.packages)} packages" if static.ok else
                       "; ".join(static.differences))]
    for s in report.roundtrip.scenarios:
        detail = s.reason if not s.ok else (f"max |dp| = {s.max_probability_diff:.1g}"
                                            if s.max_probability_diff is not None else "loads")
        rows.append(render.Row(f"round trip {s.name}", s.ok, {"train": f"{s.train_seconds:.1f} s",
                                                              "serve": f"{s.serve_seconds:.2f} s"},
                               detail + (f" ({len(s.mlflow)} MLflow model(s))" if s.mlflow else "")))
    if report.lifecycle:
        rows.append(render.Row("lifecycle (Ray Client)", report.lifecycle.ok, {"serve": f"{report.lifecycle.seconds:.1f} s"},
                               report.lifecycle.detail))
    render.table("check", rows)
    for n in static.notes:  # a team image against the lock, a BLAS difference: listed, not failures
        out.print(f"  [yellow]note[/] static: {escape(n)}")
    for s in report.roundtrip.scenarios:
        for w in s.warnings:
            out.print(f"  [yellow]warning[/] {s.name} in ray: {escape(w)}")
    for s in report.roundtrip.scenarios:
        for o in s.mlflow:
            out.print(f"  {s.name}: MLflow model {escape(o.name)} {escape(o.uri)}"
                      f"{' (' + escape(', '.join(o.registered)) + ')' if o.registered else ''}"
                      f"{': ' + escape(note_of(o)) if note_of(o) else ''}")
    if report.roundtrip.mlflow_server:
        out.print(f"MLflow: {escape(report.roundtrip.mlflow_server)}")
    out.print(f"S3 server: {escape(report.roundtrip.s3_server)}; models version {report.roundtrip.version}; "
              f"Ray Serve up in {report.roundtrip.ray_startup_seconds:.0f} s; total {report.seconds:.0f} s")
    out.print("recorded: " + ", ".join(report.recorded) if report.recorded else escape(report.record_note))

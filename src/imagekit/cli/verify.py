from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from imagekit import redact
from imagekit.cli._common import JSON, emit, envelope, escape, load, out, progress
from imagekit.engine import Engine
from imagekit.verify import verify_compat, verify_mlflow, verify_stored
from imagekit.verify.mlflowstore import note_of

S3_ENDPOINT = typer.Option(None, "--s3-endpoint", help="an S3/MinIO of your own instead of starting one "
                                                       "(keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
MLFLOW_URI = typer.Option(None, "--mlflow-uri", help="the team's MLflow tracking server (default: verify.mlflow_uri; "
                                                     "credentials: MLFLOW_TRACKING_USERNAME/_PASSWORD or "
                                                     "MLFLOW_TRACKING_TOKEN)")
JUNIT = typer.Option(None, "--junit", help="write a JUnit XML file: one test case per check, scenario or model")
REPORT = typer.Option(None, "--report", help="write the JSON report (what --json prints) to this file")


def register(app: typer.Typer) -> None:
    app.command("verify-compat")(verify)
    app.command("verify-stored")(stored)


def _artifacts(ctx: typer.Context, report, cases: list[tuple[str, bool, str, float]], junit: Path | None,
               report_file: Path | None) -> None:
    """--report: the JSON envelope; --junit: a <testsuite> with a <testcase> per check (a <failure>
    with the reason when it failed)."""
    if report_file:
        report_file.write_text(json.dumps(redact.data(envelope(ctx.info_name, result=report, ok=report.ok)), indent=1))
    if junit:
        suite = ET.Element("testsuite", name=f"imagekit {ctx.info_name}", tests=str(len(cases)),
                           failures=str(sum(not ok for _, ok, _, _ in cases)))
        for name, ok, reason, seconds in cases:
            case = ET.SubElement(suite, "testcase", classname=f"imagekit.{ctx.info_name}", name=name,
                                 time=f"{seconds:.2f}")
            if not ok:
                ET.SubElement(case, "failure", message=redact.text(reason)[:500]).text = redact.text(reason)
        ET.ElementTree(suite).write(junit, encoding="utf-8", xml_declaration=True)


def _yes(ok: bool, good: str, bad: str) -> str:
    return f"[green]{good}[/]" if ok else f"[red]{bad}[/]"


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
    """Check every model already published in the models bucket (each with a meta.json) in the
    candidate Ray image: per model, where its training environment differs from the image's
    (fingerprint), whether it loads, and whether it predicts what the notebook predicted.
    The regression check before a new Ray image is promoted: exit 1 names every model that breaks.

    Any number of models: they are checked in batches, each in a fresh process (one that kills its
    process is named, the rest are checked). Outcomes are kept in the eval bucket per (model sha256,
    image): a re-run with the same image checks only what is new (--recheck: everything).
    With --ray-address the batches are Ray tasks spread over a cluster's nodes.

    MLflow's registry instead (--mlflow-uri, or --model with verify.mlflow_uri): every registered
    version (or --model NAME[@ALIAS]) in the candidate Ray image and in a baseline one: where the
    model's requirements.txt and python_env.yaml differ from the candidate, whether it loads with
    mlflow.pyfunc, and whether it predicts its input example as the baseline does.

    Example: imagekit verify-stored --s3-endpoint http://127.0.0.1:9000 --junit stored.xml
    (after `kubectl port-forward -n mlops svc/minio 9000`)

    Example: imagekit verify-stored --mlflow-uri http://127.0.0.1:5000 --model cybersec@champion
    (after `kubectl port-forward -n mlops svc/mlflow 5000`)
    """
    cfg = load(ctx)
    if mlflow_uri or model:
        return _mlflow_stored(ctx, cfg, ray_image, baseline_image, mlflow_uri, tuple(model or ()), s3_endpoint,
                              junit, report_file, as_json)
    with progress(ctx, "verify-stored") as note:
        report = verify_stored(cfg, Engine.connect(), ray=ray_image, prefix=prefix, s3_endpoint=s3_endpoint,
                               ray_address=ray_address, batch_size=batch_size, recheck=recheck, on_line=note)
    _artifacts(ctx, report, [(m.name, m.ok, m.reason, m.seconds) for m in report.models], junit, report_file)
    if as_json:
        emit(ctx, report, True, "", ok=report.ok)
    else:
        table = Table("model", "fingerprint", "loads", "predictions", "node", "detail")
        shown = report.models if len(report.models) <= 50 else [m for m in report.models if not m.ok]
        for m in shown:
            table.add_row(escape(m.name), _yes(not m.fingerprint, "same", "differs"), _yes(m.loaded, "yes", "no"),
                          _yes(m.same_predictions, "same", "differ"), escape(m.node + (" (kept)" if m.reused else "")),
                          escape("; ".join(m.fingerprint) or m.reason))
        out.print(table)
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
    _artifacts(ctx, report, [(m.candidate.name, m.ok, m.candidate.reason, m.candidate.seconds) for m in report.models],
               junit, report_file)
    if as_json:
        emit(ctx, report, True, "", ok=report.ok)
    else:
        table = Table("model", "aliases", "requirements", "loads", "as baseline", "detail")
        for m in report.models:
            c = m.candidate
            table.add_row(escape(c.name), escape(", ".join(m.aliases)), _yes(not c.differences, "same", "differ"),
                          _yes(c.loaded, "yes", "no"), _yes(c.same_predictions, "same", "differ") if c.example and
                          not m.baseline_error else "-", escape(c.reason or m.note))
        out.print(table)
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
           s3_endpoint: Optional[str] = S3_ENDPOINT, mlflow_uri: Optional[str] = MLFLOW_URI,
           junit: Optional[Path] = JUNIT, report_file: Optional[Path] = REPORT, as_json: bool = JSON) -> None:
    """Prove that models trained in the notebook image unpickle and serve identically in the Ray image.

    Static: the Python version and every installed package, file by file, from inside both images,
    against each other and the lock. Round trip (Testcontainers): every notebook in
    verify.notebooks is a scenario; each trains and publishes to S3 (MinIO, a local stand-in, or
    --s3-endpoint) with imagekit_publish, Ray Serve loads each model (sha256 and training
    environment checked, warnings as errors) and must answer the probe inputs with the same labels
    and probabilities (regressors: predictions to 1e-9). A notebook that imports mlflow may log
    with the plain MLflow API instead (MLFLOW_TRACKING_URI is set for it: a tracking server started
    from the `mlflow` image, or --mlflow-uri): each model it logged is loaded with mlflow.pyfunc in
    both images, its requirements compared with the Ray image's first, and must answer its input
    example as in the notebook. Then the lifecycle through Ray Client. On success a signed in-toto attestation of the verified set is attached to each
    pushed image's digest (signing key: IMAGEKIT_TRUST_SIGNING_KEY); promotion requires it.
    Exit 0: all passed; 1: a check failed; 2: it could not run.

    Example: imagekit verify-compat --scenario iris --no-record    (a quick local check)
    """
    cfg = load(ctx)
    with progress(ctx, "verify-compat") as note:
        report = verify_compat(cfg, Engine.connect(), notebook=notebook_image, ray=ray_image,
                               scenarios=tuple(scenario) if scenario else None, write_record=record,
                               s3_endpoint=s3_endpoint, mlflow_uri=mlflow_uri, on_line=note)
    static_case = ("static alignment", report.static.ok, "; ".join(report.static.differences), 0.0)
    life = [("lifecycle", report.lifecycle.ok, report.lifecycle.detail, report.lifecycle.seconds)] \
        if report.lifecycle else []
    _artifacts(ctx, report, [static_case, *_cases(report.roundtrip.scenarios), *life], junit, report_file)
    if as_json:
        emit(ctx, report, True, "", ok=report.ok)
    else:
        _render(report)
    raise typer.Exit(0 if report.ok else 1)


def _render(report) -> None:
    mark = lambda ok: "[green]pass[/]" if ok else "[red]FAIL[/]"  # noqa: E731
    out.print(f"notebook {escape(report.notebook.repository or report.notebook.ref)}"
              f"{'@' + report.notebook.digest if report.notebook.digest else ''}")
    out.print(f"ray      {escape(report.ray.repository or report.ray.ref)}"
              f"{'@' + report.ray.digest if report.ray.digest else ''}")
    table = Table("check", "result", "detail", "train s", "serve s")
    table.add_row("static alignment", mark(report.static.ok),
                  f"Python {report.static.notebook.python} / {report.static.ray.python}, "
                  f"{len(report.static.notebook.packages)} / {len(report.static.ray.packages)} packages"
                  if report.static.ok else f"{len(report.static.differences)} differences", "", "")
    for s in report.roundtrip.scenarios:
        detail = escape(s.reason) if not s.ok else (f"max |dp| = {s.max_probability_diff:.1g}"
                                                    if s.max_probability_diff is not None else "loads")
        detail += f" ({len(s.mlflow)} MLflow model(s))" if s.mlflow else ""
        table.add_row(f"round trip {s.name}", mark(s.ok), detail, f"{s.train_seconds:.1f}", f"{s.serve_seconds:.2f}")
    if report.lifecycle:
        table.add_row("lifecycle (Ray Client)", mark(report.lifecycle.ok), escape(report.lifecycle.detail), "",
                      f"{report.lifecycle.seconds:.1f}")
    out.print(table)
    for d in report.static.differences:
        out.print(f"  [red]-[/] {escape(d)}")
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

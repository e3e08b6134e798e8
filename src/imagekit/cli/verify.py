from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from imagekit.cli._common import JSON, emit, escape, load, out, progress
from imagekit.engine import Engine
from imagekit.verify import SCENARIOS, verify_compat


def register(app: typer.Typer) -> None:
    app.command("verify-compat")(verify)


def verify(ctx: typer.Context,
           notebook_image: Optional[str] = typer.Option(None, help="notebook image (default: the one just built)"),
           ray_image: Optional[str] = typer.Option(None, help="Ray image (default: the one just built)"),
           scenario: Optional[List[str]] = typer.Option(None, help=f"run only these ({', '.join(SCENARIOS)})"),
           record: bool = typer.Option(True, help="on success, attach a signed attestation to each image "
                                                  "(key: IMAGEKIT_TRUST_SIGNING_KEY)"),
           as_json: bool = JSON) -> None:
    """Prove that models trained in the notebook image unpickle and serve identically in the Ray image.

    Static: the Python version and every installed package, from inside both images, against
    each other and the lock. Round trip (Testcontainers): the example notebooks train and
    publish to S3 (MinIO, or a local stand-in), Ray Serve loads each model (sha256 checked,
    warnings as errors) and must answer the probe inputs with the same labels and probabilities
    (to 1e-9). On success a signed in-toto attestation of the verified set is attached to each
    pushed image's digest (signing key: IMAGEKIT_TRUST_SIGNING_KEY); promotion requires it.
    Exit 0: all passed; 1: a check failed; 2: it could not run.

    Example: imagekit verify-compat --scenario iris --no-record    (a quick local check)
    """
    cfg = load(ctx)
    with progress(ctx, "verify-compat") as note:
        report = verify_compat(cfg, Engine.connect(), notebook=notebook_image, ray=ray_image,
                               scenarios=tuple(scenario or SCENARIOS), write_record=record, on_line=note)
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
        detail = escape(s.reason) if not s.ok else f"max |dp| = {s.max_probability_diff:.1g}"
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
    out.print(f"S3 server: {escape(report.roundtrip.s3_server)}; models version {report.roundtrip.version}; "
              f"Ray Serve up in {report.roundtrip.ray_startup_seconds:.0f} s; total {report.seconds:.0f} s")
    out.print("recorded: " + ", ".join(report.recorded) if report.recorded else escape(report.record_note))

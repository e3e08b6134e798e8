from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from imagekit import runtime
from imagekit.cli import render
from imagekit.cli._common import JSON, JUNIT, REPORT, artifacts, command, emit, load, out, progress
from imagekit.engine import Engine


def register(app: typer.Typer) -> None:
    command(app, "runtime-check", runtime_check)


def runtime_check(ctx: typer.Context,
                  ray_image: Optional[str] = typer.Option(None, help="Ray image (default: the one just built)"),
                  notebook_image: Optional[str] = typer.Option(None, help="notebook image (default: the one just built)"),
                  browser: bool = typer.Option(False, "--browser", help="also open JupyterLab through the hub "
                                               "and the Ray dashboard in headless chromium (apt-get install "
                                               "chromium chromium-driver)"),
                  screenshots: Optional[Path] = typer.Option(None, metavar="DIR", help="save a screenshot of every "
                                                             "page the browser checks there (implies --browser)"),
                  junit: Optional[Path] = JUNIT, report_file: Optional[Path] = REPORT, as_json: bool = JSON) -> None:
    """Run the images as KubeRay and JupyterHub run them.

    The Ray image as a KubeRay head and worker (KubeRay's `ray start` commands and exec probes, the
    worker joined, the tools they call, uid 1000); the notebook image as a JupyterHub single-user
    server (a real hub spawns `jupyterhub-singleuser`, its API answers under the prefix with a token
    and not without; jovyan 1000:100, git, tini, a writable home); and the pair: the notebooks of
    verify.lifecycle deploy a model from the notebook image to the head through Ray Client. With
    --browser, JupyterLab and the Ray dashboard in headless chromium. Any pair of images, a vendor
    image or an older release too (pulled when not in the engine). One line per item; exit 1 when
    one fails.

    Example: imagekit runtime-check --ray-image rayproject/ray:2.41.0-py311 --json
    Example: imagekit runtime-check --screenshots out/shots --junit rt.xml
    """
    cfg = load(ctx)
    with progress(ctx, "runtime-check") as note:
        report = runtime.check_pair(cfg, Engine.connect(), ray_image, notebook_image, on_line=note,
                                    look=runtime.Look(screenshots) if browser or screenshots else None)
    artifacts(ctx, report, [(f"{i.image}: {i.check}", i.ok, i.detail, i.seconds) for i in report.items], junit,
              report_file)
    if as_json:
        emit(ctx, report, True, "", ok=report.ok)
    else:
        render.table("check", [render.Row(f"{i.image}: {i.check}", i.ok, {"took": f"{i.seconds:.0f} s" if i.seconds
                                                                          else ""}, i.detail) for i in report.items])
        out.print(f"total {report.seconds:.0f} s")
    raise typer.Exit(0 if report.ok else 1)

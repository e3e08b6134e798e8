from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from imagekit import runtime
from imagekit.cli._common import JSON, emit, escape, load, progress
from imagekit.engine import Engine
from imagekit.verify import built_ref


def register(app: typer.Typer) -> None:
    app.command("runtime-check")(runtime_check)


def runtime_check(ctx: typer.Context,
                  ray_image: Optional[str] = typer.Option(None, help="Ray image (default: the one just built)"),
                  notebook_image: Optional[str] = typer.Option(None, help="notebook image (default: the one just built)"),
                  browser: bool = typer.Option(False, "--browser", help="also open JupyterLab through the hub "
                                               "and the Ray dashboard in headless chromium (apt-get install "
                                               "chromium chromium-driver)"),
                  screenshots: Optional[Path] = typer.Option(None, metavar="DIR", help="save a screenshot of every "
                                                             "page the browser checks there (implies --browser)"),
                  as_json: bool = JSON) -> None:
    """Check that the images work where the platform runs them: the Ray image as a KubeRay head and
    worker (KubeRay's generated `ray start` commands and its exec probes, the worker joined, the
    tools they call, uid 1000), the notebook image as a JupyterHub single-user server (a real hub
    spawns `jupyterhub-singleuser`; its API answers under the prefix with a token, not without;
    jovyan 1000:100, git, tini, a writable home), and the pair: the notebooks in
    examples/lifecycle deploy a model from the notebook image to the head through Ray Client,
    query it, compare, delete it. With --browser, what people see: log in to the hub, JupyterLab
    opens, a new notebook imports sklearn, category_encoders and ray and prints their versions,
    an ipywidgets slider renders; the Ray dashboard lists the head and the worker ALIVE. Any pair
    of images: a vendor image or an older release too. One line per item; exit 1 when one fails.

    Example: imagekit runtime-check --ray-image rayproject/ray:2.41.0-py311 --json
    Example: imagekit runtime-check --screenshots out/screenshots
    """
    cfg = load(ctx)
    ray = ray_image or built_ref(cfg, cfg.verify.server, "--ray-image")
    notebook = notebook_image or built_ref(cfg, cfg.verify.trainer, "--notebook-image")
    with progress(ctx, "runtime-check") as note:
        report = runtime.check(Engine.connect(), ray, notebook, lifecycle_notebooks=cfg.path(cfg.verify.lifecycle),
                               on_line=note, look=runtime.Look(screenshots) if browser or screenshots else None)
    emit(ctx, report, as_json, "\n".join(
        f"{'pass' if i.ok else 'FAIL'}  {i.image:<8} {i.check}" + (f"  ({escape(i.detail)})" if i.detail else "")
        + (f"  {i.seconds:.0f} s" if i.seconds else "") for i in report.items) + f"\ntotal {report.seconds:.0f} s",
         ok=report.ok)
    raise typer.Exit(0 if report.ok else 1)

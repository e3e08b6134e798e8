"""The runtime contract: what KubeRay and JupyterHub expect of the images, checked by running them.

Ray image: the tools KubeRay's probes and Ray's scripts call, uid 1000, a head and a worker started
with the commands KubeRay generates, KubeRay's exec probes on both, the worker joined. Notebook
image: docker-stacks conventions (jovyan 1000:100, a writable home, git, tini) and
`jupyterhub-singleuser` spawned by a real JupyterHub (in the same container: its simple local
spawner gives the single-user server the environment KubeSpawner gives it), answering its API under
the user's prefix with a token and refusing without one. The pair: a notebook, run headless in the
notebook image, deploys a model it trained to the head through Ray Client (ray://head:10001),
queries it, compares and deletes it (`examples/lifecycle`). With the browser (`browser.py`, which
says what it saw): JupyterLab through the hub and the Ray dashboard of the head and the worker.

Works on any pair of images (a vendor image, an older release): each item passes or fails alone.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import secrets
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from imagekit import containers, inimage, proc, services, wait
from imagekit.config import Config
from imagekit.digests import sha256_hex
from imagekit.engine import Engine
from imagekit.errors import EngineError, infrastructure
from imagekit.verify.policy import LIFECYCLE

RAYLET_PROBE = 'wget -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success'
GCS_PROBE = 'wget -T 2 -q -O- http://localhost:8265/api/gcs_healthz | grep success'
RAY_TOOLS = ("bash", "wget", "ps", "tini", "ray", "serve")
NOTEBOOK_TOOLS = ("bash", "git", "tini", "jupyterhub-singleuser", "jupyter")
HUB_DIR = "/tmp/imagekit-hub"
HUB_CONFIG = Path(__file__).parent / "in_image" / "jupyterhub_config.py"  # runs in the notebook image
HUB_API = "jupyterhub-singleuser answers under its prefix with a token"
LIFE = "lifecycle: notebook deploys to Ray and gets its own predictions"
LAB, WIDGET, DASHBOARD = ("browser: JupyterLab through the hub runs the model stack",
                          "browser: an ipywidgets slider renders in JupyterLab",
                          "browser: the Ray dashboard shows 2 alive nodes")
RUNNING = "/tmp/imagekit-lifecycle.pid"  # the lifecycle notebook's run, in the client: what a flake stops
STOP_RUNNING = f"kill $(cat {RUNNING})"
CLIENT_TRIES = 3  # the head's per-client server has died at its start twice in a row under load
RAY_REFUSALS = ("Version mismatch", "differ", "incompatible", "Error:", "Error")  # Ray Client's own first


@dataclass(frozen=True)
class Item:
    image: str  # "ray", "notebook" or "pair"
    check: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0
    notebooks: dict[str, str] = field(default_factory=dict)  # what it ran: notebook -> sha256 of what was copied


@dataclass(frozen=True)
class ContractReport:
    ray: str
    notebook: str
    items: list[Item] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.items)


def until(c: containers.Container, script: str, timeout: float, every: float = 1.0,
          gone: Callable[[], str] | None = None) -> tuple[bool, str, float]:
    """Run ``script`` until it exits 0, the container exits (or ``gone`` says why waiting cannot help), or
    ``timeout`` seconds pass: (ok, last output, seconds)."""
    started, seen = time.monotonic(), [""]

    def probe():
        code, seen[0] = c.sh(script)
        return code == 0
    try:
        wait.until(script, probe, timeout, every=every, gone=gone or c.exited)
        return True, seen[0], round(time.monotonic() - started, 1)
    except wait.NotReady as e:
        return False, (f"the container {e.gone.removeprefix('exited at start ')}" if e.gone else seen[0]), \
            round(time.monotonic() - started, 1)


def tools(c: containers.Container, names: tuple[str, ...], image: str) -> list[Item]:
    _, out = c.sh(" ; ".join(f"command -v {n} >/dev/null && echo {n}" for n in names))
    found = set(out.split())
    return [Item(image, f"tool {n}", n in found, "" if n in found else f"`{n}` is not on PATH") for n in names]


def probe(c: containers.Container, check: str, command: str) -> Item:
    """Wait (up to 2 minutes) until the endpoint answers, asked by Python, then run KubeRay's probe
    command once: a probe that cannot run (no wget, no bash) fails at once, not after the wait."""
    url = command.split("-O- ", 1)[1].split(" ", 1)[0]
    ready, _, t = until(c, f"python -c \"import urllib.request as u; u.urlopen('{url}', timeout=2)\"", 120)
    code, out = c.sh(command)
    detail = out[-200:] if ready else f"{url} never answered: {out[-200:]}"
    return Item("ray", check, ready and code == 0, detail, t)


def ray_items(run: containers.Run, ray: str, on_line: Callable[[str], None]
              ) -> tuple[list[Item], services.RayNode, services.RayNode]:
    """The Ray image as KubeRay runs it: the items, the head and the worker."""
    on_line("ray: starting a head and a worker as KubeRay starts them")
    head = run.start(services.RayNode(ray, ports=(8265,)))
    items = tools(head, RAY_TOOLS, "ray")
    _, uid = head.sh("id -u")
    items.append(Item("ray", "non-root uid 1000", uid == "1000", f"uid {uid}"))
    items.append(probe(head, "head: KubeRay raylet probe (52365)", RAYLET_PROBE))
    items.append(probe(head, "head: KubeRay GCS probe (8265)", GCS_PROBE))
    worker = run.start(services.RayNode(ray, head=False))
    items.append(probe(worker, "worker: KubeRay raylet probe (52365)", RAYLET_PROBE))
    ok, out, t = until(head, f'test "$(python -c "{services.ALIVE}" 2>/dev/null | tail -1)" = 2', 60,
                       gone=lambda: head.exited() or worker.exited())  # a worker that exits never joins: said at once
    why = "" if ok else "the head sees fewer than 2 nodes" + (f"; the worker {w}" if (w := worker.exited()) else "")
    items.append(Item("ray", "worker joined the head (2 nodes alive)", ok, why, t))
    return items, head, worker


def dashboard_item(head: containers.Container, worker: containers.Container, look: Look,
                   on_line: Callable[[str], None]) -> Item:
    from imagekit import browser
    on_line("ray: the dashboard in a browser")
    seen = browser.ray_dashboard(head.url(8265), look.screenshots, gone=worker.exited)
    return Item("ray", DASHBOARD, seen.ok, seen.detail, seen.seconds)


def notebook_server(run: containers.Run, notebook: str) -> containers.Container:  # the hub spawns in it
    return run.start(services.Idle(notebook, kind="notebook server", alias="notebook", ports=(8000,)))


def notebook_items(c: containers.Container, on_line: Callable[[str], None]) -> tuple[list[Item], bool]:
    """docker-stacks conventions and jupyterhub-singleuser under a real hub, in the notebook server ``c`` (only
    commands in it: a thread of its own may run them): the items, and whether JupyterLab can be browsed."""
    on_line("notebook: docker-stacks conventions and jupyterhub-singleuser under a real hub")
    token = secrets.token_hex(16)
    items = tools(c, NOTEBOOK_TOOLS, "notebook")
    _, ids = c.sh('echo "$(id -un) $(id -u) $(id -g) $(id -gn)"')
    items.append(Item("notebook", "user jovyan uid 1000 gid 100 (users)", ids == "jovyan 1000 100 users", ids))
    code, out = c.sh('touch "$HOME/.imagekit-probe" && rm "$HOME/.imagekit-probe" && echo "$HOME"')
    items.append(Item("notebook", "writable home", code == 0, out[-200:]))
    if not any(i.check == "tool jupyterhub-singleuser" and i.ok for i in items):
        return items + [Item("notebook", HUB_API, False, "jupyterhub-singleuser is not installed (add jupyterhub to "
                                                         "the image)")], False
    started = time.monotonic()
    c.sh(f"mkdir -p {HUB_DIR}")  # as the image's user: the hub writes its database there
    c.put(f"{HUB_DIR}/{HUB_CONFIG.name}", HUB_CONFIG)
    c.exec(["bash", "-c", f"cd {HUB_DIR} && IMAGEKIT_HUB_TOKEN={token} jupyterhub -f jupyterhub_config.py "
                          f"> hub.log 2>&1"], detach=True)
    code, out = c.sh(f"IMAGEKIT_HUB_TOKEN={token} timeout 150 python {HUB_DIR}/jupyterhub_config.py --check")
    result, seconds = proc.last_json(out), round(time.monotonic() - started, 1)
    if result is None:
        _, log = c.sh(f"tail -5 {HUB_DIR}/hub.log")
        return [*items, Item("notebook", HUB_API, False, (out or log)[-300:], seconds)], False
    return [*items, hub_item(result, seconds)], True


def lab_items(c: containers.Container, look: Look, on_line: Callable[[str], None]) -> list[Item]:
    from imagekit import browser
    on_line("notebook: JupyterLab through the hub in a browser")
    lab, widget = browser.jupyterlab(c.url(8000), "jovyan", look.screenshots)
    return [Item("notebook", LAB, lab.ok, lab.detail, lab.seconds),
            Item("notebook", WIDGET, widget.ok, widget.detail, widget.seconds)]


def hub_item(result: dict, seconds: float) -> Item:
    """The single-user server's API under its prefix: 200 with the user's token, and refused outright
    without one (401 or 403). A redirect is not a refusal: it is what the server answers for a page
    a browser should log in to, and an API that redirects instead of refusing has lost its auth."""
    ok = result["with_token"] == 200 and result["without_token"] in (401, 403)
    detail = (f"{result['prefix']}api/status: {result['with_token']} with the token, {result['without_token']} "
              f"without; env {', '.join(result['env'])}")
    return Item("notebook", HUB_API, ok, detail, seconds)


def lifecycle_client(run: containers.Run, notebook: str) -> containers.Container:
    """The notebook image, idle, for the lifecycle notebooks: Ray Client of the run's head."""
    return run.start(services.Idle(notebook, kind="lifecycle client", alias="client",
                                   env={"RAY_ADDRESS": "ray://head:10001", "SERVE_URL": "http://head:8000"}))


def lifecycle(c: containers.Container, head: services.RayNode | None, folder: Path,
              on_line: Callable[[str], None]) -> Item:
    """The notebooks in ``folder`` run headless in the notebook image (``c``, its lifecycle client) against
    the head: each trains, deploys through Ray Client, queries, compares, deletes; the last line of its
    output says how. Only commands run in the containers: it may run in a thread of its own."""
    started = time.monotonic()
    if head is None:
        return Item("pair", LIFE, False, "no head to deploy to (see the ray items)")
    on_line("pair: the lifecycle notebook deploys to the head through Ray Client")
    copied = {nb.name: nb.read_bytes() for nb in sorted(folder.glob("*.ipynb"))}  # what is hashed is what ran
    c.sh(f"mkdir -p /tmp/{LIFECYCLE}")  # as the image's user: the notebooks write their results there
    for name, body in copied.items():
        c.put(f"/tmp/{LIFECYCLE}/{name}", body)
    details, ok = [], bool(copied)
    for name in copied:
        run = shlex.join(inimage.python("-c", inimage.EXECUTE, name))
        script = (f"cd /tmp/{LIFECYCLE} && rm -f result.json && {{ timeout 300 {run} >/dev/null 2>/tmp/execute.log & "
                  f"echo $! > {RUNNING}; wait $!; }}; rc=$?; cat result.json 2>/dev/null || "
                  f"tail -300 /tmp/execute.log; exit $rc")  # a failed cell's frame is above its library frames
        for tries in range(1, CLIENT_TRIES + 1):  # the head's per-client server, not a mismatch: again
            code, out, flake = head.client_run(c, script, stop=STOP_RUNNING)
            if flake and tries < CLIENT_TRIES:
                on_line(f"pair: {name} met a Ray Client start failure on the head ({flake}): running it again "
                        f"({tries + 1} of {CLIENT_TRIES})")
            else:
                break
        result = proc.last_json(out) or {}
        stem = name.removesuffix(".ipynb")
        if code == 0 and result.get("same"):
            details.append(f"{stem}: {result.get('detail', 'same predictions')}")
        else:
            ok = False
            at = "" if flake or result.get("detail") else proc.cell(out)  # where its own code was, if it failed
            why = (f"the head's Ray Client server did not start for it in {CLIENT_TRIES} tries ({flake})" if flake
                   else result.get("detail") or proc.reason(out, markers=RAY_REFUSALS, follow=6))
            details.append(f"{stem}: {why}" + (f" (at {at})" if at else ""))
    return Item("pair", LIFE, ok, "; ".join(details), round(time.monotonic() - started, 1),
                notebooks={n.removesuffix(".ipynb"): sha256_hex(b) for n, b in copied.items()})


@dataclass(frozen=True)
class Look:
    """The browser items: headless chromium on this machine; screenshots kept in a folder, if given."""
    screenshots: Path | None = None


@infrastructure("runtime-check")
def check(engine: Engine, ray: str, notebook: str, *, lifecycle_notebooks: Path,
          on_line: Callable[[str], None] | None = None, look: Look | None = None) -> ContractReport:
    started, note = time.monotonic(), on_line or (lambda line: None)
    for ref in (ray, notebook):
        if engine.image(ref) is None:
            raise EngineError(f"image {ref} is not in the engine", hint="build it (`imagekit build`) or load it")
    if look is not None:
        from imagekit import browser
        browser.tools()  # no browser: said before any container starts
    with containers.Run(engine, "runtime-check", note=note) as run:  # every container starts in this thread
        server, client = notebook_server(run, notebook), lifecycle_client(run, notebook)
        aside = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="runtime")
        try:  # the notebook's items beside the Ray side's, then the lifecycle beside the hub, if it still runs
            hub = aside.submit(notebook_items, server, note)
            ray_side, head, worker = ray_items(run, ray, note)
            life = lifecycle(client, None if head.exited() else head, lifecycle_notebooks, note)
            notebook_side, browsable = hub.result()
        except BaseException:
            server.remove()  # its commands end with it
            raise
        finally:
            aside.shutdown(wait=True)
        if look is not None:  # after the last container started: chromium drops connections when interfaces change
            ray_side.append(dashboard_item(head, worker, look, note))
            notebook_side += lab_items(server, look, note) if browsable else []
        items = [*ray_side, *notebook_side, life]
    return ContractReport(ray=ray, notebook=notebook, items=items, seconds=round(time.monotonic() - started, 1))


def check_pair(cfg: Config, engine: Engine, ray: str | None, notebook: str | None, *,
               on_line: Callable[[str], None] | None = None, look: Look | None = None) -> ContractReport:
    """``imagekit runtime-check``: the pair named (pulled with the environments' credentials when not in
    the engine), by default the last build's."""
    from imagekit.verify.subjects import subject

    ray = subject(cfg, engine, "ray", ray).ref
    notebook = subject(cfg, engine, "notebook", notebook).ref
    return check(engine, ray, notebook, lifecycle_notebooks=cfg.path(cfg.verify.lifecycle), on_line=on_line, look=look)


@contextlib.contextmanager
def lifecycle_head(engine: Engine, ray: str, notebook: str, on_line: Callable[[str], None] | None = None
                   ) -> Iterator[Callable[[Path], Item]]:
    """verify-compat's lifecycle scenario, begun: a head from the Ray image (KubeRay's command) and the
    notebook image's client start now; the head boots while other work goes on. What it gives deploys the
    notebooks of a folder to that head (``deploy(folder)``, once the head answers): only commands in the
    containers, so it may run in a thread while the containers are this thread's to remove; once done, it
    removes them itself."""
    note = on_line or (lambda line: None)
    with containers.Run(engine, "lifecycle", note=note) as run:
        note("lifecycle: starting a Ray head for the notebooks to deploy to")
        head, client = run.start(services.RayNode(ray)), lifecycle_client(run, notebook)

        def deploy(folder: Path) -> Item:
            try:
                head.ready(120)
            except wait.NotReady:  # the lifecycle says there was no head to deploy to; the run removes it
                return lifecycle(client, None, folder, note)
            try:
                return lifecycle(client, head, folder, note)
            finally:  # an idle head still takes CPU (a third of a core here) from the work it ran beside
                head.remove()
                client.remove()
        yield deploy

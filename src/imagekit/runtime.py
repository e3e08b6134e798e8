"""The runtime contract: what KubeRay and JupyterHub expect of the images, checked by running them.

Ray image: the tools KubeRay's probes and Ray's scripts call, uid 1000, a head and a worker started
with the commands KubeRay generates, KubeRay's exec probes on both, the worker joined. Notebook
image: docker-stacks conventions (jovyan 1000:100, a writable home, git, tini) and
`jupyterhub-singleuser` spawned by a real JupyterHub (in the same container: its simple local
spawner gives the single-user server the environment KubeSpawner gives it), answering its API under
the user's prefix with a token and refusing without one. The pair: a notebook, run headless in the
notebook image, deploys a model it trained to the head through Ray Client (ray://head:10001),
queries it, compares and deletes it (`examples/lifecycle`). With the browser (`browser.py`):
JupyterLab through the hub and the Ray dashboard of the head and the worker, in headless chromium.

Works on any pair of images (a vendor image, an older release): each item passes or fails alone.
"""
from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import docker

from imagekit.engine import Engine
from imagekit.errors import EngineError, infrastructure

RAYLET_PROBE = 'wget -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success'
GCS_PROBE = 'wget -T 2 -q -O- http://localhost:8265/api/gcs_healthz | grep success'
HEAD = ["ray", "start", "--head", "--dashboard-host=0.0.0.0", "--port=6379", "--ray-client-server-port=10001",
        "--num-cpus=1", "--disable-usage-stats", "--block"]
WORKER = ["ray", "start", "--address=head:6379", "--num-cpus=1", "--disable-usage-stats", "--block"]
RAY_TOOLS = ("bash", "wget", "ps", "tini", "ray", "serve")
NOTEBOOK_TOOLS = ("bash", "git", "tini", "jupyterhub-singleuser", "jupyter")
HUB_DIR = "/tmp/imagekit-hub"
HUB_CONFIG = Path(__file__).parent / "in_image" / "jupyterhub_config.py"  # runs in the notebook image
LIFECYCLE = "lifecycle"
# Ray Client's proxier on the head failing to start a client's server under load (it relays the
# reason to the client), not a mismatch: the notebook runs once more
CLIENT_START_FLAKES = ("Starting Ray client server failed", "psutil.ZombieProcess")


@dataclass(frozen=True)
class Item:
    image: str  # "ray", "notebook" or "pair"
    check: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class ContractReport:
    ray: str
    notebook: str
    items: list[Item] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.items)


class _Run:
    """Containers on one network of their own, all removed at the end."""

    def __init__(self, engine: Engine) -> None:
        self.client = engine.client
        self.network = self.client.networks.create(f"imagekit-runtime-{secrets.token_hex(4)}")
        self.containers = []

    def start(self, image: str, cmd: list[str] | None, name: str, env: dict[str, str] | None = None):
        """A container reachable as ``name`` on the network (as a Kubernetes service name would be)."""
        try:
            c = self.client.containers.create(image, cmd, detach=True, environment=env or {}, shm_size="512m",
                                              network=self.network.name, hostname=name,
                                              name=f"{self.network.name}-{name}")
            self.containers.append(c)
            self.network.disconnect(c)  # attached again under its alias, before it starts
            self.network.connect(c, aliases=[name])
            c.start()
        except docker.errors.APIError as e:
            raise EngineError(f"cannot start {name} from {image}: {e.explanation}") from None
        return c

    def close(self) -> None:
        for c in self.containers:
            with contextlib.suppress(docker.errors.APIError):
                c.remove(force=True)
        with contextlib.suppress(docker.errors.APIError):
            self.network.remove()


def sh(c, script: str) -> tuple[int, str]:
    """``bash -c script`` in a running container (as KubeRay's exec probes run): exit code, output
    (126 and the engine's reason when the container is not running)."""
    try:
        code, out = c.exec_run(["bash", "-c", script])
    except docker.errors.APIError as e:
        return 126, f"cannot run it in the container: {e.explanation}"
    return code, out.decode(errors="replace").strip()


def until(c, script: str, timeout: float, every: float = 1.0) -> tuple[bool, str, float]:
    """Run ``script`` until it exits 0 or ``timeout`` seconds pass: (ok, last output, seconds)."""
    started, out = time.monotonic(), ""
    while time.monotonic() - started < timeout:
        c.reload()
        if c.status == "exited":
            return False, f"the container exited: {c.logs(tail=5).decode(errors='replace').strip()}", 0.0
        code, out = sh(c, script)
        if code == 0:
            return True, out, round(time.monotonic() - started, 1)
        time.sleep(every)
    return False, out, round(time.monotonic() - started, 1)


def tools(c, names: tuple[str, ...], image: str) -> list[Item]:
    _, out = sh(c, " ; ".join(f"command -v {n} >/dev/null && echo {n}" for n in names))
    found = set(out.split())
    return [Item(image, f"tool {n}", n in found, "" if n in found else f"`{n}` is not on PATH") for n in names]


def probe(c, check: str, command: str) -> Item:
    """Wait (up to 2 minutes) until the endpoint answers, asked by Python, then run KubeRay's probe
    command once: a probe that cannot run (no wget, no bash) fails at once, not after the wait."""
    url = command.split("-O- ", 1)[1].split(" ", 1)[0]
    ready, _, t = until(c, f"python -c \"import urllib.request as u; u.urlopen('{url}', timeout=2)\"", 120)
    code, out = sh(c, command)
    detail = out[-200:] if ready else f"{url} never answered: {out[-200:]}"
    return Item("ray", check, ready and code == 0, detail, t)


def address(run: _Run, c) -> str:
    """The container's address on the run's network, as this machine reaches it (a local engine)."""
    c.reload()
    return c.attrs["NetworkSettings"]["Networks"][run.network.name]["IPAddress"]


def ray_items(run: _Run, ray: str, on_line: Callable[[str], None],
              look: Look | None = None) -> tuple[list[Item], object | None]:
    """The Ray image as KubeRay runs it; returns the items and the head (for the lifecycle)."""
    on_line("ray: starting a head and a worker as KubeRay starts them")
    head = run.start(ray, HEAD, "head")
    items = tools(head, RAY_TOOLS, "ray")
    _, uid = sh(head, "id -u")
    items.append(Item("ray", "non-root uid 1000", uid == "1000", f"uid {uid}"))
    items.append(probe(head, "head: KubeRay raylet probe (52365)", RAYLET_PROBE))
    items.append(probe(head, "head: KubeRay GCS probe (8265)", GCS_PROBE))
    worker = run.start(ray, WORKER, "worker")
    items.append(probe(worker, "worker: KubeRay raylet probe (52365)", RAYLET_PROBE))
    count = "import ray; ray.init(address='auto', logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))"
    ok, out, t = until(head, f'test "$(python -c "{count}" 2>/dev/null | tail -1)" = 2', 60, every=2)
    items.append(Item("ray", "worker joined the head (2 nodes alive)", ok, "" if ok else "the head sees fewer than 2 nodes", t))
    if look is not None:
        from imagekit import browser
        on_line("ray: the dashboard in a browser")
        items.append(browser.ray_dashboard(f"http://{address(run, head)}:8265", look.screenshots))
    head.reload()
    return items, head if head.status == "running" else None


def notebook_items(run: _Run, notebook: str, on_line: Callable[[str], None], look: Look | None = None) -> list[Item]:
    on_line("notebook: docker-stacks conventions and jupyterhub-singleuser under a real hub")
    token = secrets.token_hex(16)
    c = run.start(notebook, ["sleep", "infinity"], "notebook")
    items = tools(c, NOTEBOOK_TOOLS, "notebook")
    _, ids = sh(c, 'echo "$(id -un) $(id -u) $(id -g) $(id -gn)"')
    items.append(Item("notebook", "user jovyan uid 1000 gid 100 (users)", ids == "jovyan 1000 100 users", ids))
    code, out = sh(c, 'touch "$HOME/.imagekit-probe" && rm "$HOME/.imagekit-probe" && echo "$HOME"')
    items.append(Item("notebook", "writable home", code == 0, out[-200:]))
    if not any(i.check == "tool jupyterhub-singleuser" and i.ok for i in items):
        return items + [Item("notebook", "jupyterhub-singleuser answers under its prefix with a token", False,
                             "jupyterhub-singleuser is not installed (add jupyterhub to the image)")]
    started = time.monotonic()
    sh(c, f"mkdir -p {HUB_DIR}")  # as the image's user: the hub writes its database there
    Engine.put(c, f"{HUB_DIR}/{HUB_CONFIG.name}", HUB_CONFIG)
    c.exec_run(["bash", "-c", f"cd {HUB_DIR} && IMAGEKIT_HUB_TOKEN={token} jupyterhub -f jupyterhub_config.py "
                              f"> hub.log 2>&1"], detach=True)
    code, out = sh(c, f"IMAGEKIT_HUB_TOKEN={token} timeout 150 python {HUB_DIR}/jupyterhub_config.py --check")
    result = _last_json(out)
    if result is None:
        _, log = sh(c, f"tail -5 {HUB_DIR}/hub.log")
        return items + [Item("notebook", "jupyterhub-singleuser answers under its prefix with a token", False,
                             (out or log)[-300:], round(time.monotonic() - started, 1))]
    items.append(hub_item(result, round(time.monotonic() - started, 1)))
    if look is not None:
        from imagekit import browser
        on_line("notebook: JupyterLab through the hub in a browser")
        items += browser.jupyterlab(f"http://{address(run, c)}:8000", "jovyan", look.screenshots)
    return items


def hub_item(result: dict, seconds: float) -> Item:
    """The single-user server's API under its prefix: 200 with the user's token, and refused outright
    without one (401 or 403). A redirect is not a refusal: it is what the server answers for a page
    a browser should log in to, and an API that redirects instead of refusing has lost its auth."""
    ok = result["with_token"] == 200 and result["without_token"] in (401, 403)
    detail = (f"{result['prefix']}api/status: {result['with_token']} with the token, {result['without_token']} "
              f"without; env {', '.join(result['env'])}")
    return Item("notebook", "jupyterhub-singleuser answers under its prefix with a token", ok, detail, seconds)


def _last_json(out: str) -> dict | None:
    for line in reversed(out.splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict):
                return data
    return None


def lifecycle(run: _Run, notebook: str, head, folder: Path, on_line: Callable[[str], None]) -> Item:
    """The notebooks in ``folder`` run headless in the notebook image against the head: each trains,
    deploys through Ray Client, queries, compares, deletes; the last line of its output says how."""
    started = time.monotonic()
    if head is None:
        return Item("pair", "lifecycle: notebook deploys to Ray and gets its own predictions", False,
                    "no head to deploy to (see the ray items)")
    on_line("pair: the lifecycle notebook deploys to the head through Ray Client")
    c = run.start(notebook, ["sleep", "infinity"], "client",
                  env={"RAY_ADDRESS": "ray://head:10001", "SERVE_URL": "http://head:8000"})
    notebooks = sorted(folder.glob("*.ipynb"))
    sh(c, f"mkdir -p /tmp/{LIFECYCLE}")  # as the image's user: the notebooks write their results there
    for nb in notebooks:
        Engine.put(c, f"/tmp/{LIFECYCLE}/{nb.name}", nb)
    details, ok = [], bool(notebooks)
    for nb in notebooks:
        script = (f"cd /tmp/{LIFECYCLE} && rm -f result.json && timeout 300 jupyter nbconvert --to notebook "
                  f"--execute --output /tmp/{LIFECYCLE}/out-{nb.name} {nb.name} >/dev/null 2>/tmp/nbconvert.log; "
                  f"rc=$?; cat result.json 2>/dev/null || tail -20 /tmp/nbconvert.log; exit $rc")
        code, out = sh(c, script)
        if code and any(flake in out for flake in CLIENT_START_FLAKES):  # the head's per-client server: once more
            code, out = sh(c, script)
        result = _last_json(out) or {}
        if code == 0 and result.get("same"):
            details.append(f"{nb.stem}: {result.get('detail', 'same predictions')}")
        else:
            ok = False
            details.append(f"{nb.stem}: {result.get('detail') or _reason(out)}")
    return Item("pair", "lifecycle: notebook deploys to Ray and gets its own predictions", ok, "; ".join(details),
                round(time.monotonic() - started, 1))


def _reason(out: str) -> str:
    """The telling line of a failed notebook run: Ray Client's own refusal when there is one."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", out).splitlines() if line.strip()]
    for marker in ("Version mismatch", "differ", "incompatible", "Error:", "Error"):
        found = [i for i, line in enumerate(lines) if marker in line]
        if found:  # with the lines that follow: Ray's messages list both sides below the first line
            return " ".join(lines[found[-1]:found[-1] + 7])[:400]
    return (lines[-1] if lines else "the notebook failed with no output")[-400:]


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
    run = _Run(engine)
    try:
        items, head = ray_items(run, ray, note, look)
        items += notebook_items(run, notebook, note, look)
        items.append(lifecycle(run, notebook, head, lifecycle_notebooks, note))
    finally:
        run.close()
    return ContractReport(ray=ray, notebook=notebook, items=items, seconds=round(time.monotonic() - started, 1))


def deploy_from_notebook(engine: Engine, notebook: str, ray: str, folder: Path,
                         on_line: Callable[[str], None] | None = None) -> Item:
    """verify-compat's lifecycle scenario: a head from the Ray image (KubeRay's command), the
    notebooks in ``folder`` deploying to it from the notebook image."""
    note, run = on_line or (lambda line: None), _Run(engine)
    try:
        note("lifecycle: starting a Ray head for the notebooks to deploy to")
        head = run.start(ray, HEAD, "head")
        ready, out, _ = until(head, "ray health-check --address head:6379 >/dev/null 2>&1", 120, every=2)
        return lifecycle(run, notebook, head if ready else None, folder, note)
    finally:
        run.close()

"""The runtime contract against the real images: KubeRay head and worker with KubeRay's probes,
GCS fault tolerance with Redis, JupyterHub spawning the notebook image, the notebook-to-Ray
lifecycle; and images made wrong on purpose, which must fail for the named reason."""
import json

import pytest
from helpers import ROOT, variant

from imagekit import containers, runtime, services
from support import redis_image
from imagekit.verify.compat import verify_compat

LIFECYCLE = ROOT / "examples" / "lifecycle"
SCREENSHOTS = ROOT / "out" / "screenshots"  # kept by CI as artifacts
PNG = b"\x89PNG\r\n\x1a\n"


def by_check(report):
    return {i.check: i for i in report.items}


@pytest.fixture(scope="module")
def pair(built):
    return {i.name: f"{i.repository}:{i.tags[0]}" for i in built.images}  # BuildKit builds FROM a name


@pytest.mark.browser
def test_the_built_pair_meets_the_runtime_contract(engine, pair, leftovers):
    """With the browser: JupyterLab through the hub runs the model stack and renders a slider, and
    the Ray dashboard counts the head and the worker ALIVE; each page saved as a screenshot."""
    before = leftovers()
    shots = SCREENSHOTS / "built-pair"
    report = runtime.check(engine, pair["ray"], pair["notebook"], lifecycle_notebooks=LIFECYCLE,
                           look=runtime.Look(shots))
    assert report.ok, [i for i in report.items if not i.ok]
    items = by_check(report)
    for check in ("head: KubeRay raylet probe (52365)", "head: KubeRay GCS probe (8265)",
                  "worker: KubeRay raylet probe (52365)", "worker joined the head (2 nodes alive)"):
        assert items[check].ok and items[check].image == "ray"
    hub = items["jupyterhub-singleuser answers under its prefix with a token"]
    assert "200 with the token, 403 without" in hub.detail and "JUPYTERHUB_API_TOKEN" in hub.detail
    assert "JUPYTERHUB_SERVICE_PREFIX" in hub.detail
    assert "labels equal, largest probability difference 0.0e+00" in items[
        "lifecycle: notebook deploys to Ray and gets its own predictions"].detail
    lab = items["browser: JupyterLab through the hub runs the model stack"]
    assert "sklearn, category_encoders, ray: 1.9.1 2.8.1 2.41.0" in lab.detail, lab.detail
    assert "IntSlider in the DOM" in items["browser: an ipywidgets slider renders in JupyterLab"].detail
    assert "ALIVE x 2" in items["browser: the Ray dashboard shows 2 alive nodes"].detail
    for name in ("jupyterlab", "ipywidgets", "ray-dashboard-overview", "ray-dashboard"):
        assert (shots / f"{name}.png").read_bytes().startswith(PNG), name
    assert leftovers() == before


@pytest.mark.browser
def test_a_notebook_image_without_the_widgets_front_end_fails_the_browser_item(engine, pair, tmp_path, leftovers):
    """jupyterlab_widgets' lab extension removed: the API and JupyterLab still pass, the slider
    never renders and the item says so, with what the output reads instead."""
    before = leftovers()
    notebook = variant(engine, pair["notebook"], tmp_path, "notebook-no-widgets-front-end",
                       "RUN rm -r /opt/venv/share/jupyter/labextensions/@jupyter-widgets", user="jovyan")
    with containers.Run(engine, "test") as run:
        server = runtime.notebook_server(run, notebook)
        found, browsable = runtime.notebook_items(server, lambda line: None)
        assert browsable
        found += runtime.lab_items(server, runtime.Look(SCREENSHOTS / "no-widgets-front-end"), lambda line: None)
    items = {i.check: i for i in found}
    assert items["jupyterhub-singleuser answers under its prefix with a token"].ok
    assert items["browser: JupyterLab through the hub runs the model stack"].ok
    slider = items["browser: an ipywidgets slider renders in JupyterLab"]
    assert not slider.ok and "no slider in the page" in slider.detail
    assert "jupyterlab_widgets, is not loaded" in slider.detail and "IntSlider" in slider.detail, slider.detail
    assert leftovers() == before


def test_images_made_wrong_fail_for_the_named_reason(engine, pair, tmp_path, cli, cfg, leftovers):
    """A Ray image without wget (KubeRay pods never Ready), a notebook image without
    jupyterhub-singleuser and with another Ray version (Ray Client refuses it)."""
    before = leftovers()
    ray = variant(engine, pair["ray"], tmp_path, "ray-no-wget", "RUN rm /usr/bin/wget", user="ray")
    notebook = variant(engine, pair["notebook"], tmp_path, "notebook-other-ray",
                       "RUN sed -i 's/^version = \"2.41.0\"/version = \"2.40.0\"/' "
                       "/opt/venv/lib/python3.11/site-packages/ray/_version.py && rm /opt/venv/bin/jupyterhub-singleuser",
                       user="jovyan")
    code, out, _ = cli("--config", cfg.source, "runtime-check", "--ray-image", ray, "--notebook-image", notebook,
                       "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    items = {i["check"]: i for i in report["result"]["items"]}
    assert items["tool wget"]["ok"] is False and "`wget` is not on PATH" in items["tool wget"]["detail"]
    assert items["head: KubeRay raylet probe (52365)"]["ok"] is False
    assert items["tool jupyterhub-singleuser"]["ok"] is False
    assert "not installed" in items["jupyterhub-singleuser answers under its prefix with a token"]["detail"]
    lifecycle = items["lifecycle: notebook deploys to Ray and gets its own predictions"]
    assert lifecycle["ok"] is False and "2.40.0" in lifecycle["detail"] and "2.41.0" in lifecycle["detail"]
    assert items["tool bash"]["ok"] and items["worker joined the head (2 nodes alive)"]["ok"]  # the rest still runs
    assert leftovers() == before


def test_verify_compat_lifecycle_fails_naming_the_ray_versions(engine, pair, tmp_path, cfg, leftovers):
    """A notebook image whose Ray says another version: static alignment names the edited file (the
    distribution's metadata still says 2.41.0), and Ray Client refuses it: the lifecycle names both, and the
    notebook's cell and line that met the refusal."""
    before = leftovers()
    notebook = variant(engine, pair["notebook"], tmp_path, "notebook-ray-2-40",
                       "RUN sed -i 's/^version = \"2.41.0\"/version = \"2.40.0\"/' "
                       "/opt/venv/lib/python3.11/site-packages/ray/_version.py", user="jovyan")
    report = verify_compat(cfg, engine, notebook=notebook, scenarios=("lifecycle",), write_record=False)
    assert not report.ok and report.roundtrip.scenarios == []
    assert report.static.differences == ["ray: ray/_version.py in notebook is changed since install (not what its "
                                         "RECORD lists, same version 2.41.0)"]
    assert "Version mismatch" in report.lifecycle.detail and "2.40.0" in report.lifecycle.detail
    assert "(at Cell In[2], line 1: ray.init(" in report.lifecycle.detail  # the notebook's line that met it
    assert leftovers() == before


APP = b'''from ray import serve


@serve.deployment
class Alive:
    def __call__(self, request):
        return "alive"


app = Alive.bind()
'''
CONFIG = b'''http_options: {host: 0.0.0.0, port: 8000}
applications:
  - {name: alive, route_prefix: /alive, import_path: alive_app:app}
'''


@pytest.mark.network  # the Redis test image is made from Debian's packages, downloaded with apt
@pytest.mark.parametrize("redis", [True, False], ids=["with-redis", "without-redis"])
def test_a_serve_application_survives_a_head_restart_with_redis(engine, pair, base_image, tmp_path, leftovers, redis):
    """GCS fault tolerance as KubeRay configures it (RAY_REDIS_ADDRESS on the head): with an external
    Redis the application deployed before the head container is killed is served after its restart;
    without one it is gone (the control)."""
    before = leftovers()
    with containers.Run(engine, "test") as run:
        env = {}
        if redis:
            run.start(containers.Container(redis_image(engine, base_image, tmp_path), alias="redis"))
            env = {"RAY_REDIS_ADDRESS": "redis:6379", "RAY_external_storage_namespace": "imagekit-test"}
        head = run.start(services.RayNode(pair["ray"], env=env))
        assert runtime.until(head, runtime.GCS_PROBE, 120)[0]
        worker = run.start(services.RayNode(pair["ray"], head=False, env={"RAY_gcs_rpc_server_reconnect_timeout_s": "300"}))
        for c in (head, worker):
            c.put("/opt/serving/alive_app.py", APP)
        head.put("/tmp/alive.yaml", CONFIG)
        assert runtime.until(worker, runtime.RAYLET_PROBE, 120)[0]
        code, out = head.sh("serve deploy /tmp/alive.yaml")
        assert code == 0, out
        serving = "wget -t 1 -T 2 -q -O- http://localhost:8000/alive | grep alive"
        assert runtime.until(head, serving, 120)[0]
        head.c.kill()
        head.c.start()
        assert runtime.until(head, runtime.GCS_PROBE, 120)[0]
        if redis:  # the application comes back
            ok, out, _ = runtime.until(head, serving, 120)
            assert ok, out
        else:  # settled at once, not by waiting: Serve's own state after the restart holds no application
            ok, status, _ = runtime.until(head, "serve status 2>&1 | grep -q '^applications:' && serve status", 60)
            assert ok and "applications: {}" in status and "alive" not in status, status
            assert head.sh("wget -t 1 -T 2 -q -O- http://localhost:8000/alive")[0] != 0  # one try: no retries
    assert leftovers() == before


REFUSE_WORKER = (  # a `ray` that starts a head but no worker: what a broken worker image does
    "RUN mv /opt/venv/bin/ray /opt/venv/bin/ray.real && printf '%s\\n' '#!/bin/bash' "
    "'if [[ \" $* \" == *\" --address=head:6379 \"* ]]; then echo \"worker refused\" >&2; exit 1; fi' "
    "'exec /opt/venv/bin/ray.real \"$@\"' > /opt/venv/bin/ray && chmod 755 /opt/venv/bin/ray")


@pytest.mark.browser
def test_the_user_the_home_and_the_worker_fail_for_the_named_reason(engine, pair, tmp_path, leftovers):
    """A Ray image running as root whose workers do not start (its dashboard counts one node), and a
    notebook image whose jovyan is uid 1001 with a home it cannot write: each item fails alone, the
    others still pass. Only the items these break run (not the lifecycle, nor JupyterLab in a browser)."""
    before = leftovers()
    ray = variant(engine, pair["ray"], tmp_path, "ray-root-no-worker", REFUSE_WORKER, user="root")
    notebook = variant(engine, pair["notebook"], tmp_path, "notebook-uid-1001-ro-home",
                       "RUN usermod -u 1001 jovyan && chown -R 1001 /home/jovyan && chmod 0555 /home/jovyan",
                       user="jovyan")
    with containers.Run(engine, "test") as run:
        found, _ = runtime.notebook_items(runtime.notebook_server(run, notebook), lambda line: None)
        ray_side, head, worker = runtime.ray_items(run, ray, lambda line: None)
        found += [*ray_side, runtime.dashboard_item(head, worker, runtime.Look(SCREENSHOTS / "no-worker"),
                                                    lambda line: None)]
    items = {i.check: i for i in found}
    dashboard = items["browser: the Ray dashboard shows 2 alive nodes"]
    assert not dashboard.ok and "the cluster page says ALIVE x 1" in dashboard.detail, dashboard.detail
    assert not items["non-root uid 1000"].ok and items["non-root uid 1000"].detail == "uid 0"
    assert not items["worker joined the head (2 nodes alive)"].ok
    assert "sees fewer than 2 nodes" in items["worker joined the head (2 nodes alive)"].detail
    assert not items["worker: KubeRay raylet probe (52365)"].ok
    assert items["head: KubeRay GCS probe (8265)"].ok  # the head itself is fine
    user = items["user jovyan uid 1000 gid 100 (users)"]
    assert not user.ok and user.detail == "jovyan 1001 100 users"
    assert not items["writable home"].ok
    assert items["tool git"].ok
    assert leftovers() == before

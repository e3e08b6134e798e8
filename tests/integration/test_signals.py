"""Nothing left behind: a container that dies at start is named with its exit code and last lines and
removed; a verify-compat stopped by SIGTERM (a cancelled CI job) in any phase removes every container
and network it started and says so. Only what this test run labelled counts (leftovers)."""
import json
import os
import shutil
import signal
import subprocess

import pytest
from helpers import ROOT, variant

PHASES = {"static": "static alignment", "servers": "S3: ", "training": "training iris",
          "serving": "starting Ray Serve", "lifecycle": "the lifecycle notebook deploys",
          "signing": "signing the attestation"}


def test_a_ray_image_that_exits_at_start_is_named_and_removed(cfg, built, engine, tmp_path, cli, leftovers):
    ray = built.image("ray")
    broken = variant(engine, f"{ray.repository}:{ray.tags[0]}", tmp_path, "ray-exits-at-start",
                     'ENTRYPOINT ["bash", "-c", "echo \\"serve: no model server in this image\\" >&2; exit 3"]')
    before = leftovers()
    code, out, err = cli("--config", cfg.source, "verify-compat", "--ray-image", broken, "--scenario", "iris",
                         "--no-record", "--json")
    error = json.loads(out)["error"]
    assert code == 2 and error["message"].startswith(f"the image {broken} could not be asked what it holds through its "
                                                     f"entrypoint (bash -c "), error
    assert "serve: no model server in this image" in error["message"] and "Traceback" not in err
    assert leftovers() == before


@pytest.mark.parametrize("phase", list(PHASES))
def test_sigterm_in_any_phase_removes_every_container_and_says_so(phase, own_project, engine, leftovers, tmp_path):
    cfg, env = own_project
    folder = tmp_path / "scenarios"
    folder.mkdir()
    shutil.copy(ROOT / "examples" / "notebooks" / "iris.ipynb", folder)  # a whole run: it is signed at the end
    before = leftovers()
    run = subprocess.Popen([str(ROOT / ".venv" / "bin" / "imagekit"), "--config", cfg.source, "verify-compat"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, **env, "IMAGEKIT_VERIFY_NOTEBOOKS": str(folder)})
    seen = []
    for line in run.stderr:
        seen.append(line)
        if PHASES[phase] in line:
            run.send_signal(signal.SIGTERM)
            break
    out, rest = run.communicate(timeout=300)
    assert any(PHASES[phase] in line for line in seen), "".join(seen) + rest + out  # a run that ended first: why
    assert run.returncode == 143, "".join(seen) + rest
    assert "terminated (SIGTERM): every container this command started was removed" in rest
    assert "Traceback" not in rest and leftovers() == before

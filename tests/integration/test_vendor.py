"""A team's images as they run today: the stand-ins of rayproject/ray and docker-stacks' scipy-notebook
(conda prefixes with conda-meta, pip-freeze.txt, start.sh with its hooks, no ENTRYPOINT in the Ray image,
no label and no code of imagekit's), verified as they are; what a check cannot use in them is named."""
import json

import pytest
from helpers import variant

from imagekit.errors import PreconditionError
from imagekit.verify import static

PATCHED = "/home/ray/anaconda3/lib/python3.11/site-packages/sklearn/__init__.py"


def test_the_team_pair_passes_verify_compat_as_it_is(cfg, cli, vendor, leftovers):
    before = leftovers()
    code, out, err = cli("--config", cfg.source, "verify-compat", "--ray-image", vendor["ray"], "--notebook-image",
                         vendor["notebook"], "--scenario", "iris", "--scenario", "mlflow-pyfunc", "--no-record", "--json")
    report = json.loads(out)["result"]
    assert code == 0 and report["ok"], err
    assert [(s["name"], s["ok"]) for s in report["roundtrip"]["scenarios"]] == [("iris", True), ("mlflow-pyfunc", True)]
    ray, notebook = report["static"]["ray"], report["static"]["notebook"]
    assert ray["name"] == notebook["name"] == ""  # judged without a label
    assert (ray["prefix"], notebook["prefix"]) == ("/home/ray/anaconda3", "/opt/conda")
    assert ray["installers"]["requests"] == "conda" and ray["installers"]["ray"] == "uv"  # which installer, each
    assert notebook["installers"]["scikit-learn"] == "conda" and notebook["conda"]["python"]["version"] == "3.11.2"
    assert notebook["conda"]["numpy"]["channel"].endswith("conda-forge")
    assert ray["blas"] and ray["blas"] == notebook["blas"] and all(b.startswith("openblas") for b in ray["blas"])
    # moved prefixes: pip's scripts (from /opt/venv) and conda's (from the build prefix conda-meta names)
    assert ray["changed"] == notebook["changed"] == [] and report["static"]["differences"] == []
    moved_from = {old for _, _, old in notebook["relocated"]}
    assert "/opt/venv" in moved_from and any("_placehold" in old for old in moved_from)
    assert leftovers() == before


def test_the_team_pair_passes_runtime_check(cfg, cli, vendor, leftovers):
    before = leftovers()
    code, out, err = cli("--config", cfg.source, "runtime-check", "--ray-image", vendor["ray"], "--notebook-image",
                         vendor["notebook"], "--json")
    report = json.loads(out)["result"]
    assert code == 0 and report["ok"], [i for i in report["items"] if not i["ok"]]
    assert leftovers() == before


@pytest.mark.network  # downloads scikit-learn 1.8.0 from the index
def test_a_pair_with_another_scikit_learn_is_refused_naming_it(engine, cfg, shared_lock, vendor, vendor_ray_sklearn_1_8):
    older = vendor_ray_sklearn_1_8
    report = static.compare(cfg, shared_lock, static.inspect(engine, vendor["notebook"]), static.inspect(engine, older))
    assert not report.ok and report.differences == ["scikit-learn: notebook 1.9.1, ray 1.8.0, lock 1.9.1"]
    assert f"scikit-learn: {older} has 1.8.0, the lock's shared view 1.9.1" in report.notes


def test_a_relocated_prefix_is_no_alarm_and_a_patched_file_is_named(engine, vendor, tmp_path):
    patched = variant(engine, vendor["ray"], tmp_path, "vendor-ray-patched", f"RUN echo '# patched' >> {PATCHED}")
    facts = static.inspect(engine, patched)
    assert facts.changed == [("scikit-learn", "sklearn/__init__.py", "changed")]
    assert facts.relocated and not any(f.startswith("sklearn/") for _, f, _ in facts.relocated)


def test_an_image_whose_entrypoint_runs_nothing_is_named_as_such(cfg, cli, engine, vendor, tmp_path, leftovers):
    before = leftovers()
    silent = variant(engine, vendor["notebook"], tmp_path, "vendor-notebook-silent-entrypoint",
                     "RUN printf '#!/bin/bash\\necho \"starting the notebook\"\\n' > /usr/local/bin/start.sh", user="1000")
    with pytest.raises(PreconditionError) as e:
        static.inspect(engine, silent)
    assert "has an entrypoint (tini -g -- start.sh) that ran without running the command it was given" in str(e.value)
    assert "starting the notebook" in str(e.value)
    code, out, _ = cli("--config", cfg.source, "verify-compat", "--ray-image", vendor["ray"], "--notebook-image",
                       silent, "--scenario", "iris", "--no-record", "--json")
    error = json.loads(out)["error"]
    assert code == 2 and "ran without running the command it was given" in error["message"], error
    assert leftovers() == before


def test_diff_reads_images_from_inside_them(cfg, cli, engine, built, vendor, tmp_path):
    without = variant(engine, vendor["ray"], tmp_path, "vendor-ray-no-custom",
                      "RUN /home/ray/anaconda3/bin/python -m pip uninstall -q -y sunat-custom-models")
    code, out, err = cli("--config", cfg.source, "diff", vendor["ray"], without, "--json")
    [d] = json.loads(out)["result"]
    assert code == 0 and d["python"] == ["3.11.2", "3.11.2"], err
    assert [(c["name"], c["a"], c["b"], c["kind"], c["risk"]) for c in d["changes"]] == [
        ("sunat-custom-models", "1.0.0", "", "removed", "high")]
    ours = built.image("ray")
    code, out, err = cli("--config", cfg.source, "diff", f"{ours.repository}:{ours.tags[0]}", vendor["ray"], "--json")
    [d] = json.loads(out)["result"]
    assert code == 0 and d["changes"] == [] and d["lock"][1] == "" and not d["same_digest"], err

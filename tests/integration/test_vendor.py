"""A team's images as they run today: the stand-ins of rayproject/ray and docker-stacks' scipy-notebook
(conda prefixes with conda-meta, pip-freeze.txt, start.sh with its hooks, no ENTRYPOINT in the Ray image,
no label and no code of imagekit's), verified as they are; what a check cannot use in them is named."""
import json
import os

import pytest
from helpers import make_wheel, variant

from support import on_vendor_bases

from imagekit import build, config, containers, facts
from imagekit.errors import PreconditionError
from imagekit.images import BASE_DIGEST, BASE_NAME
from imagekit.verify import static

PATCHED = "/home/ray/anaconda3/lib/python3.11/site-packages/sklearn/__init__.py"
REAL = {"ray": "IMAGEKIT_TEST_VENDOR_RAY", "notebook": "IMAGEKIT_TEST_VENDOR_NOTEBOOK"}  # e.g.
# rayproject/ray:2.41.0-py311@sha256:... and quay.io/jupyter/scipy-notebook:python-3.11@sha256:... (tags move)


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


@pytest.mark.vendor
def test_the_real_vendor_pair_takes_the_same_path(cfg, cli, engine):
    refs = {role: os.environ.get(name, "") for role, name in REAL.items()}
    if not all("@sha256:" in r for r in refs.values()):
        pytest.skip(f"set {' and '.join(REAL.values())} to the vendor images pinned by digest")
    for ref in refs.values():
        if engine.image(ref) is None and engine.pull(ref):
            pytest.skip(f"{ref} cannot be pulled here")
    code, out, err = cli("--config", cfg.source, "verify-compat", "--ray-image", refs["ray"], "--notebook-image",
                         refs["notebook"], "--scenario", "iris", "--no-record", "--json")
    assert code in (0, 1) and json.loads(out)["result"]["roundtrip"]["scenarios"], err  # judged, not refused


def test_a_ray_image_without_ray_serve_is_named_with_that_reason(cfg, cli, engine, vendor, tmp_path, leftovers):
    before = leftovers()
    bare = variant(engine, vendor["ray"], tmp_path, "vendor-ray-no-ray",
                   "RUN /home/ray/anaconda3/bin/python -m pip uninstall -q -y ray")
    code, out, _ = cli("--config", cfg.source, "verify-compat", "--ray-image", bare, "--notebook-image",
                       vendor["notebook"], "--scenario", "iris", "--no-record", "--json")
    error = json.loads(out)["error"]
    assert code == 2 and error["kind"] == "PreconditionError", error
    assert error["message"].startswith(f"the Ray image {bare} cannot serve models with Ray Serve: this image has no "
                                       f"ray[serve] (ModuleNotFoundError: No module named 'ray')"), error
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
    report = static.compare(cfg, shared_lock, facts.inspect(engine, vendor["notebook"]), facts.inspect(engine, older))
    assert not report.ok and report.differences == ["scikit-learn: notebook 1.9.1, ray 1.8.0, lock 1.9.1"]
    assert f"scikit-learn: {older} has 1.8.0, the lock's shared view 1.9.1" in report.notes


def test_a_pair_whose_pythons_differ_in_the_patch_is_refused_saying_why(engine, cfg, shared_lock, vendor, cli,
                                                                         vendor_notebook_other_patch, tmp_path):
    other = facts.inspect(engine, vendor_notebook_other_patch)
    assert other.python != "3.11.2" and other.prefix == "/opt/conda"
    report = static.compare(cfg, shared_lock, other, facts.inspect(engine, vendor["ray"]))
    assert report.differences == [static.python_pair("notebook", other.python, "ray", "3.11.2")], report.differences
    assert "a driver that joins the Ray cluster must match Python to the patch" in report.differences[0]
    bases = {"ray": vendor["ray"], "notebook": vendor_notebook_other_patch}  # building on them: refused first
    project = config.load(on_vendor_bases(cfg.source, tmp_path / "project", bases), env={})
    code, out, _ = cli("--config", project.source, "build", "ray", "notebook", "--json")
    error = json.loads(out)["error"]
    assert code == 2 and error["message"] == (f"the vendor bases carry different Pythons: notebook's "
                                              f"{vendor_notebook_other_patch} has {other.python}, ray's "
                                              f"{vendor['ray']} has 3.11.2"), error
    assert "take both bases at the same Python patch" in error["hint"]
    assert not (project.root / "out" / "build.json").exists()  # nothing was built


def test_a_relocated_prefix_is_no_alarm_and_a_patched_file_is_named(engine, vendor, tmp_path):
    patched = variant(engine, vendor["ray"], tmp_path, "vendor-ray-patched", f"RUN echo '# patched' >> {PATCHED}")
    held = facts.inspect(engine, patched)
    assert held.changed == [("scikit-learn", "sklearn/__init__.py", "changed")]
    assert held.relocated and not any(f.startswith("sklearn/") for _, f, _ in held.relocated)


def test_an_image_whose_entrypoint_runs_nothing_is_named_as_such(cfg, cli, engine, vendor, tmp_path, leftovers):
    before = leftovers()
    silent = variant(engine, vendor["notebook"], tmp_path, "vendor-notebook-silent-entrypoint",
                     "RUN printf '#!/bin/bash\\necho \"starting the notebook\"\\n' > /usr/local/bin/start.sh", user="1000")
    with pytest.raises(PreconditionError) as e:
        facts.inspect(engine, silent)
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


def vendor_wheels(tmp, tool_requires=()):
    """What a team's vendor image may hold beside the lock: sqlparse older than the lock's (with a module
    the lock's has not), a tool of the vendor's own, and no sunat-custom-models (the lock adds it)."""
    return [make_wheel(tmp, "sqlparse", "0.4.0", modules={"legacy_only.py": "OLD = True\n"}),
            make_wheel(tmp, "vendor-tool", "1.0", requires=tool_requires)]


def team_ray(engine, vendor, tmp, name, tool_requires=()):
    wheels = vendor_wheels(tmp / f"{name}-wheels", tool_requires)
    return variant(engine, vendor["ray"], tmp, name,
                   "COPY *.whl /tmp/\nRUN /home/ray/anaconda3/bin/python -m pip install -q --no-index --no-deps "
                   "/tmp/*.whl && /home/ray/anaconda3/bin/python -m pip uninstall -q -y sunat-custom-models "
                   "&& rm /tmp/*.whl && chown -R 1000:100 /home/ray/anaconda3", files=wheels)


@pytest.fixture(scope="module")
def built_on_vendor(cfg, engine, vendor, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("on-vendor")
    bases = {"ray": team_ray(engine, vendor, tmp, "vendor-ray-team"), "notebook": vendor["notebook"]}
    vcfg = config.load(on_vendor_bases(cfg.source, tmp / "project", bases), env={})
    return vcfg, bases, build.build(vcfg, engine, names=["ray", "notebook"])


def test_images_built_on_vendor_bases_keep_the_vendor_and_lay_the_lock_over_it(engine, built_on_vendor):
    vcfg, bases, result = built_on_vendor
    ray, notebook = result.image("ray"), result.image("notebook")
    assert {i.name for i in result.images} >= {"ray", "notebook"} and ray.base["name"] == bases["ray"]
    assert ray.labels[BASE_NAME] == bases["ray"] and ray.labels[BASE_DIGEST] == ray.base["digest"]
    assert ray.base["prefix"] == "/home/ray/anaconda3" and notebook.base["prefix"] == "/opt/conda"
    drift = {d["name"]: d for d in ray.drift}
    assert drift["sqlparse"] == {"name": "sqlparse", "status": "replaced", "vendor": "0.4.0", "lock": "0.6.1",
                                 "installer": "pip"}
    assert drift["sunat-custom-models"]["status"] == "added" and drift["vendor-tool"]["status"] == "kept"
    assert drift["requests"]["installer"] == "conda" and drift["requests"]["status"] == "replaced"
    saved = json.loads((vcfg.root / "out" / "build.json").read_text())
    assert {d["name"]: d["status"] for d in next(i for i in saved["images"] if i["name"] == "ray")["drift"]} == {
        n: d["status"] for n, d in drift.items()}
    for image, base in ((ray, bases["ray"]), (notebook, bases["notebook"])):  # the vendor's user and entrypoint
        mine, theirs = engine.image(image.image_id).config, engine.image(base).config
        assert [mine.get(k) for k in ("User", "Entrypoint", "Cmd", "WorkingDir")] == [
            theirs.get(k) for k in ("User", "Entrypoint", "Cmd", "WorkingDir")]
        assert set(theirs["Env"]) - {e for e in mine["Env"] if not e.startswith("PYTHONPATH=")} == set()
    site = "/home/ray/anaconda3/lib/python3.11/site-packages"
    listing = containers.run(engine, ray.image_id, ["sh", "-c", f"ls {site} | grep -i sqlparse; ls {site}/sqlparse; "
                                                               f"ls -ld /home/ray {site} | cut -c1-30; id -un"])
    assert "sqlparse-0.6.1.dist-info" in listing and "sqlparse-0.4.0.dist-info" not in listing
    assert "legacy_only.py" not in listing and "ray" in listing.split()[-1:]
    held = facts.inspect(engine, ray.image_id)
    assert held.changed == [] and held.packages["sqlparse"] == "0.6.1" and held.packages["vendor-tool"] == "1.0"
    assert all(line.split()[2:4] == ["ray", "users"] for line in listing.splitlines() if line.startswith("d"))


def test_a_vendor_requirement_the_lock_breaks_is_named(cfg, engine, vendor, tmp_path, cli):
    base = team_ray(engine, vendor, tmp_path, "vendor-ray-conflict", tool_requires=("sqlparse<0.5",))
    vcfg = config.load(on_vendor_bases(cfg.source, tmp_path / "project", {"ray": base}), env={})
    for _ in range(2):  # and again: a failed check leaves no image a later build takes as built
        code, out, err = cli("--config", vcfg.source, "build", "ray", "--json")
        error = json.loads(out)["error"]
        assert code == 1 and "ray: the installed packages do not fit together" in error["message"], error
        assert error["differences"] == ["vendor's vendor-tool 1.0 requires sqlparse<0.5, the lock pins 0.6.1"]


def test_the_pair_built_on_vendor_bases_passes_runtime_check_and_verify_compat(cfg, cli, built_on_vendor, leftovers):
    vcfg, _, result = built_on_vendor
    ray, notebook = result.image("ray").image_id, result.image("notebook").image_id
    code, out, err = cli("--config", vcfg.source, "runtime-check", "--ray-image", ray, "--notebook-image", notebook,
                         "--json")
    report = json.loads(out)["result"]
    assert code == 0 and report["ok"], [i for i in report["items"] if not i["ok"]]
    code, out, err = cli("--config", vcfg.source, "verify-compat", "--ray-image", ray, "--notebook-image", notebook,
                         "--scenario", "iris", "--scenario", "custom-v1", "--no-record", "--json")
    report = json.loads(out)["result"]
    assert code == 0 and report["ok"], err
    assert "vendor-tool: 1.0 in ray, kept from its vendor base" in " ".join(report["static"]["notes"])

"""An image's Python layers, made where they were installed: run by layers.py in the install container,
with the image's own Python, beside a copy of tars.py.

    python make_layers.py PLAN.json

PLAN: {"trees": folder of one installed tree per group, "layers": folder to write to,
       "prefix": tars.Prefix's fields (where the trees go in the image), "groups": [name, ...]}

Each tree's .py files are compiled to bytecode (checked-hash invalidation, the source named by its path
in the image, every core at once), then each tree is written as LAYERS/<group>.tar by tars.write_tar.
LAYERS/report.json: {"uncompiled": {group: [path, ...]}, "compile": s, "tar": s}. A file that does not
compile is said, never fatal (as pip and uv: Python compiles it at import, or it is a template).
"""
import json
import os
import py_compile
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tars  # noqa: E402  (copied beside this file)


def sources(tree, image_path):
    """(file, its path in the image) for each .py file of ``tree``, symlinked folders not followed."""
    for folder, dirs, names in os.walk(tree):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(folder, name)
            if name.endswith(".py") and os.path.isfile(full):
                yield full, image_path + full[len(tree):]


def compile_one(job):
    """None, or (group, the path in the image) of a file that does not compile."""
    group, full, dfile = job
    try:
        py_compile.compile(full, dfile=dfile, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    except (py_compile.PyCompileError, SyntaxError, ValueError):
        return group, dfile
    return None


def write_layer(job):
    tree, out, path, owners = job
    with open(out, "wb") as f:
        tars.write_tar(f, tree, path.strip("/"), owners=owners)


def main(plan_path):
    with open(plan_path) as f:
        plan = json.load(f)
    prefix = tars.Prefix(**{**plan["prefix"], "folders": tuple(tuple(f) for f in plan["prefix"]["folders"])})
    trees = {g: os.path.join(plan["trees"], g) for g in plan["groups"]}
    jobs = [(g, *source) for g, tree in trees.items() for source in sources(tree, prefix.path)]
    report = {"uncompiled": {}}
    os.makedirs(plan["layers"], exist_ok=True)
    cores = os.cpu_count() or 1
    with ProcessPoolExecutor(cores) as pool:
        started = time.monotonic()
        for failed in pool.map(compile_one, jobs, chunksize=max(1, len(jobs) // (cores * 16))):
            if failed:
                report["uncompiled"].setdefault(failed[0], []).append(failed[1])
        report["compile"] = round(time.monotonic() - started, 2)
        started = time.monotonic()
        files = Counter(j[0] for j in jobs)
        biggest = sorted(trees, key=lambda g: -files[g])  # the longest tars first
        owners = None if prefix.venv else prefix
        list(pool.map(write_layer, [(trees[g], os.path.join(plan["layers"], g + ".tar"), prefix.path, owners)
                                    for g in biggest]))
        report["tar"] = round(time.monotonic() - started, 2)
    with open(os.path.join(plan["layers"], "report.json"), "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main(sys.argv[1])

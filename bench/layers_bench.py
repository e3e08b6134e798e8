"""What a one-package bump costs every cluster node: new compressed layer bytes per image, imagekit's
layering against the single-layer install of the release before it, in the same run.

    .venv/bin/python bench/layers_bench.py [BASE_BUMP] [NOTEBOOK_BUMP]
        defaults: joblib==1.5.3 (in every image, a 0.3 MB wheel), beautifulsoup4==4.14.3 (notebook only)

Each variant is a git worktree (this commit, and OLD: the last commit that installed the lock
as one layer per image) built with its own code and pushed to a registry of its own on loopback;
then the bump is locked, built and pushed again. "New" is the compressed size of the layers in
the bumped image's manifest that its previous manifest did not have: what a node pulls.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' support

from imagekit.registry import Registry
from support import RegistryProcess

ROOT = Path(__file__).resolve().parents[1]
OLD = "0dd633a"  # the lock in one pip-installed layer per image, Dockerfile install stages
IMAGES = {"ray": "ray", "notebook": "scipy-notebook"}


def sh(*cmd, cwd=None, env=None) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{(done.stderr or done.stdout)[-3000:]}")
    return done.stdout


def layers(reg: Registry, repo: str, tag: str) -> tuple[str, dict[str, int]]:
    manifest = reg.manifest(repo, tag)
    return manifest.digest, {d["digest"]: d["size"] for d in json.loads(manifest.body)["layers"]}


def run(variant: str, commit: str, tmp: Path, bumps: list[tuple[str, str]]) -> dict:
    tree = tmp / variant
    sh("git", "-C", ROOT, "worktree", "add", "--detach", tree, commit)
    cache = tmp / f"cache-{variant}"
    cache.mkdir()
    (cache / "wheels").symlink_to(Path.home() / ".cache" / "imagekit" / "wheels")  # downloads are not the point
    registry = RegistryProcess(tmp / f"registry-{variant}").start()
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "IMAGEKIT_CACHE_DIR": str(cache),
           "IMAGEKIT_REGISTRY_URL": registry.host}
    imagekit = [sys.executable, "-m", "imagekit"]
    reg = Registry(host=registry.host, scheme="http")
    result = {"build": [], "steps": []}
    try:
        t = time.monotonic()
        sh(*imagekit, "build", cwd=tree, env=env)
        result["build"].append(time.monotonic() - t)
        sh(*imagekit, "push", cwd=tree, env=env)
        tag = {img["name"]: img["tags"][0] for img in json.loads((tree / "out" / "build.json").read_text())["images"]}
        before = {n: layers(reg, f"mlops-desa/{repo}", tag[n]) for n, repo in IMAGES.items()}
        ids = {i["name"]: i["image_id"] for i in json.loads((tree / "out" / "build.json").read_text())["images"]}
        for image, pin in bumps:
            with open(tree / "images" / image / "requirements.in", "a") as f:
                f.write(f"{pin}\n")
            sh(*imagekit, "lock", cwd=tree, env=env)
            t = time.monotonic()
            sh(*imagekit, "build", cwd=tree, env=env)  # same project.version: which images are the same image?
            result["build"].append(time.monotonic() - t)
            rebuilt = {i["name"]: i["image_id"] for i in json.loads((tree / "out" / "build.json").read_text())["images"]}
            unchanged, ids = {n for n in IMAGES if rebuilt[n] == ids[n]}, rebuilt
            release = {**env, "IMAGEKIT_PROJECT_VERSION": str(100 + len(result["steps"]))}  # a release: new tags
            sh(*imagekit, "build", cwd=tree, env=release)
            sh(*imagekit, "push", cwd=tree, env=release)
            built = {img["name"]: img for img in json.loads((tree / "out" / "build.json").read_text())["images"]}
            after = {n: layers(reg, f"mlops-desa/{repo}", built[n]["tags"][0]) for n, repo in IMAGES.items()}
            result["steps"].append({"bump": f"{image}: {pin}", "images": {
                n: {"new_bytes": sum(s for d, s in after[n][1].items() if d not in before[n][1]),
                    "total_bytes": sum(after[n][1].values()), "layers": len(after[n][1]),
                    "same_image": n in unchanged} for n in IMAGES}})
            before = after
    finally:
        registry.stop()
        sh("git", "-C", ROOT, "worktree", "remove", "--force", tree)
    return result


def main() -> None:
    base_bump = sys.argv[1] if len(sys.argv) > 1 else "joblib==1.5.3"
    notebook_bump = sys.argv[2] if len(sys.argv) > 2 else "beautifulsoup4==4.14.3"
    bumps = [("base", base_bump), ("notebook", notebook_bump)]
    with tempfile.TemporaryDirectory(prefix="imagekit-bench-") as tmp:
        results = {v: run(v, c, Path(tmp), bumps) for v, c in (("layered", "HEAD"), ("single-layer", OLD))}
    for variant, r in results.items():
        print(f"{variant}: cold build {r['build'][0]:.0f} s, rebuilds after each bump "
              + ", ".join(f"{s:.0f} s" for s in r["build"][1:]))
        for step in r["steps"]:
            for name, i in step["images"].items():
                print(f"  {step['bump']:<34} {name:<9} new {i['new_bytes'] / 1e6:7.1f} MB of "
                      f"{i['total_bytes'] / 1e6:6.0f} MB compressed, {i['layers']:2} layers"
                      + (", the same image as before the bump" if i["same_image"] else ""))
    for n in range(len(bumps)):
        for name in IMAGES:
            a, b = (results[v]["steps"][n]["images"][name]["new_bytes"] for v in ("layered", "single-layer"))
            ratio = f"{b / a:8.1f}x" if a else ("   both 0" if not b else "layered 0")
            print(f"{bumps[n][1]:<24} {name:<9} single-layer / layered new bytes: {ratio}")


if __name__ == "__main__":
    main()

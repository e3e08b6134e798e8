"""Lay imagekit's /opt/venv out as a vendor image's conda prefix: the vendor images' stand-ins (rayproject/ray's
/home/ray/anaconda3, docker-stacks' /opt/conda), which cannot be pulled here. Run in the image being made:

    python vendor_prefix.py SRC DEST [--conda DIST ...] [--pinned SPEC]

1. SRC moves to DEST, and every file of DEST/bin that names SRC is rewritten to name DEST, as a relocation
   does: pip's scripts then no longer match their RECORD's hash, only because of the prefix they name.
2. conda-meta/ holds records in conda's format (name, version, build, build_number, channel, subdir, files,
   paths_data): python itself (conda only: no dist-info), and each --conda DIST as conda-forge ships it:
   INSTALLER "conda", and its scripts as conda-build wrote them, naming the build prefix (a placeholder,
   which the RECORD hashes), linked here with the placeholder replaced by DEST (paths_data:
   prefix_placeholder, file_mode text).
3. conda-meta/history, and conda-meta/pinned with --pinned (docker-stacks pins "python 3.11.*").
"""
import argparse
import base64
import hashlib
import importlib.metadata as metadata
import json
import os
import platform
import shutil
import sys

CHANNEL = "https://conda.anaconda.org/conda-forge"


def placeholder(name):
    """conda-build's build prefix for ``name``: long, so that any install prefix fits in its place."""
    return f"/home/conda/feedstock_root/build_artifacts/{name}_1733000000000/_h_env" + "_placehold" * 12


def record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def relocate(src, dest):
    shutil.move(src, dest)
    for folder in (os.path.join(dest, "bin"), dest):
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as fh:
                body = fh.read()
            if src.encode() in body and b"\0" not in body:
                with open(path, "wb") as fh:
                    fh.write(body.replace(src.encode(), dest.encode()))


def write_record(meta, name, version, build, files, paths):
    with open(os.path.join(meta, f"{name}-{version}-{build}.json"), "w") as fh:
        json.dump({"name": name, "version": version, "build": build, "build_number": 0, "channel": CHANNEL,
                   "subdir": "linux-64", "files": files, "paths_data": {"paths": paths, "paths_version": 1},
                   "requested_spec": name, "link": {"source": f"/opt/pkgs/{name}-{version}-{build}", "type": 1}},
                  fh, indent=2, sort_keys=True)


def conda_installed(dest, site, meta, dist_name):
    """Make ``dist_name`` look installed by conda from conda-forge."""
    dist = metadata.distribution(dist_name)
    info = next(p for p in dist.files if str(p).endswith(".dist-info/RECORD")).parent
    files, paths, lines = [], [], []
    held = placeholder(dist_name.replace("-", "_").lower())
    for line in (site / info / "RECORD").read_text().splitlines():
        rel, _, _ = line.partition(",")
        path = os.path.normpath(os.path.join(site, rel))
        inside = os.path.relpath(path, dest)
        if not os.path.isfile(path):  # a listed .pyc never written (PYTHONDONTWRITEBYTECODE)
            lines.append(line)
            continue
        with open(path, "rb") as fh:
            body = fh.read()
        if rel.endswith("INSTALLER"):
            body = b"conda\n"
            with open(path, "wb") as fh:
                fh.write(body)
        entry = {"_path": inside, "path_type": "hardlink", "size_in_bytes": len(body)}
        if inside.startswith("bin/") and dest.encode() in body:  # a script: conda-build wrote the placeholder
            built = body.replace(dest.encode(), held.encode())
            entry.update(prefix_placeholder=held, file_mode="text", sha256=hashlib.sha256(built).hexdigest(),
                         sha256_in_prefix=hashlib.sha256(body).hexdigest())
            line = f"{rel},{record_hash(built)},{len(built)}"
        elif rel.endswith("INSTALLER"):
            entry["sha256"] = hashlib.sha256(body).hexdigest()
            line = f"{rel},{record_hash(body)},{len(body)}"
        else:
            entry["sha256"] = hashlib.sha256(body).hexdigest()
        files.append(inside)
        paths.append(entry)
        lines.append(line)
    (site / info / "RECORD").write_text("\n".join(lines) + "\n")
    write_record(meta, dist_name.lower(), dist.version, "pyhd8ed1ab_0", files, paths)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("src")
    p.add_argument("dest")
    p.add_argument("--conda", nargs="*", default=[])
    p.add_argument("--pinned", default="")
    args = p.parse_args()
    relocate(args.src, args.dest)
    from pathlib import Path

    site = Path(args.dest, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")
    sys.path.insert(0, str(site))  # the moved distributions, as metadata sees them from now on
    meta = os.path.join(args.dest, "conda-meta")
    os.makedirs(meta)
    write_record(meta, "python", platform.python_version(), "hab00c5b_0_cpython",
                 ["bin/python3.11"], [{"_path": "bin/python3.11", "path_type": "softlink"}])
    for name in args.conda:
        conda_installed(args.dest, site, meta, name)
    with open(os.path.join(meta, "history"), "w") as fh:
        fh.write("==> 2024-10-21 00:00:00 <==\n# cmd: mamba install --yes " + " ".join(args.conda) + "\n")
    if args.pinned:
        with open(os.path.join(meta, "pinned"), "w") as fh:
            fh.write(args.pinned + "\n")


if __name__ == "__main__":
    main()

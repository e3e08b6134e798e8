"""What an image holds, asked of its own Python (the static check and `imagekit diff`; any image, any
prefix: imagekit's /opt/venv, a conda prefix of rayproject/ray or docker-stacks). Prints one JSON line:

    {"python", "executable", "prefix", "packages": {dist: version}, "installers": {dist: "pip"|"uv"|"conda"|...},
     "conda": {name: {"version", "build", "channel"}}, "changed": [[dist, file, "changed"|"missing"]],
     "relocated": [[dist, file, old prefix]], "blas": ["openblas 0.3.27", ...] | null, "blas_error"}

A file whose content is not what its distribution's RECORD lists (sha256) is "changed", unless it
differs only by the prefix it names: the RECORD's hash comes back when this prefix is written as an
older one (conda's prefix_placeholder in conda-meta's paths_data, or a prefix the environment was
moved from: a rewritten shebang). Python 3.8 or newer, standard library only (threadpoolctl when the
image has it).
"""
import base64
import glob
import hashlib
import importlib.metadata as metadata
import json
import os
import platform
import sys

MOVED_FROM = ("/opt/venv", "/opt/conda", "/home/ray/anaconda3", "/usr/local", "/usr", "/opt/anaconda1anaconda2anaconda3")


def b64(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def conda_records(prefix):
    """conda-meta: each record's name, version, build and channel, and the prefixes conda replaced."""
    records, placeholders = {}, set()
    for path in sorted(glob.glob(os.path.join(prefix, "conda-meta", "*.json"))):
        try:
            with open(path) as fh:
                rec = json.load(fh)
        except (OSError, ValueError):
            continue
        records[rec.get("name") or os.path.basename(path)] = {
            "version": rec.get("version", ""), "build": rec.get("build", ""), "channel": rec.get("channel", "")}
        for p in (rec.get("paths_data") or {}).get("paths", []):
            if p.get("prefix_placeholder"):
                placeholders.add(p["prefix_placeholder"])
    return records, placeholders


def moved_from(body, prefix, want, olds):
    """The older prefix that gives back the RECORD hash ``want`` when written for this one, or None."""
    here = prefix.encode()
    if here not in body:
        return None
    return next((old for old in olds if b64(body.replace(here, old.encode())) == want), None)


def blas():
    try:
        import numpy  # noqa: F401  (loads its BLAS)
        import scipy.linalg  # noqa: F401
        from threadpoolctl import threadpool_info
    except Exception as e:  # an image without numpy, scipy or threadpoolctl: not known, said why
        return None, "%s: %s" % (type(e).__name__, e)
    found = {"%s %s" % (i.get("internal_api", "?"), i.get("version") or "") for i in threadpool_info()
             if i.get("user_api") == "blas"}
    return sorted(s.strip() for s in found), ""


def main():
    prefix = sys.prefix
    conda, placeholders = conda_records(prefix)
    olds = sorted((placeholders | set(MOVED_FROM)) - {prefix}, key=len, reverse=True)
    packages, installers, changed, relocated = {}, {}, [], []
    for d in metadata.distributions():
        name = d.metadata["Name"]
        if name in packages:  # shadowed by one earlier on sys.path
            continue
        packages[name] = d.version
        installers[name] = (d.read_text("INSTALLER") or "").strip() or "unknown"
        for f in d.files or []:
            if f.hash is None or f.hash.mode != "sha256":
                continue
            try:
                with open(f.locate(), "rb") as fh:
                    body = fh.read()
            except OSError:
                changed.append([name, str(f), "missing"])
                continue
            if b64(body) == f.hash.value:
                continue
            old = moved_from(body, prefix, f.hash.value, olds)
            if old:
                relocated.append([name, str(f), old])
            else:
                changed.append([name, str(f), "changed"])
    libs, why = blas()
    print(json.dumps({"python": platform.python_version(), "executable": sys.executable, "prefix": prefix,
                      "packages": packages, "installers": installers, "conda": conda, "changed": changed,
                      "relocated": relocated, "blas": libs, "blas_error": why}))


if __name__ == "__main__":
    main()

"""What an image holds, asked of its own Python (the static check, `imagekit diff`, a build on a vendor
base; any image, any prefix: imagekit's /opt/venv, a conda prefix of rayproject/ray or docker-stacks).
Prints one JSON line:

    {"python", "executable", "prefix", "glibc", "packages": {dist: version}, "installers": {dist: "pip"|"uv"|"conda"|...},
     "conda": {name: {"version", "build", "channel"}}, "changed": [[dist, file, "changed"|"missing"]],
     "relocated": [[dist, file, old prefix]], "blas": ["openblas 0.3.27", ...] | null, "blas_error",
     "folders": [[path, mode, uid, gid], ...]}  (the prefix and every folder above it)

With ``--files DIST ...``: {"files": {dist: [path, ...]}} instead, every path each distribution
installed (its RECORD's files, its dist-info folder, and conda-meta's record of it with its files).

A file whose content is not what its distribution's RECORD lists (sha256) is "changed", unless it
differs only by the prefix it names: the RECORD's hash comes back when this prefix is written as an
older one (conda's prefix_placeholder in conda-meta's paths_data, or a prefix the environment was
moved from: a rewritten shebang). Python 3.8 or newer, standard library only (threadpoolctl when the
image has it).
"""
import sys

if sys.version_info < (3, 8):  # said before an import that would fail: the image's Python is the reason
    sys.exit("imagekit: needs Python 3.8 or newer; this image's python is %s" % sys.version.split()[0])

import base64  # noqa: E402
import glob  # noqa: E402
import hashlib  # noqa: E402
import importlib.metadata as metadata  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402

MOVED_FROM = ("/opt/venv", "/opt/conda", "/home/ray/anaconda3", "/usr/local", "/usr", "/opt/anaconda1anaconda2anaconda3")


def b64(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def canonical(name):
    """A distribution's name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def conda_meta(prefix):
    """conda-meta's records in ``prefix``: (the record's path, the record)."""
    for path in sorted(glob.glob(os.path.join(prefix, "conda-meta", "*.json"))):
        try:
            with open(path) as fh:
                yield path, json.load(fh)
        except (OSError, ValueError):
            continue


def conda_records(prefix):
    """conda-meta: each record's name, version, build and channel, and the prefixes conda replaced."""
    records, placeholders = {}, set()
    for path, rec in conda_meta(prefix):
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


def folders(prefix):
    """The prefix and each folder above it, with their mode and owner (a layer keeps them as they are)."""
    found, path = [], prefix
    while path not in ("/", ""):
        st = os.stat(path)
        found.append([path, st.st_mode & 0o7777, st.st_uid, st.st_gid])
        path = os.path.dirname(path)
    return found[::-1]


def installed_files(names):
    """Every path each distribution of ``names`` installed (absolute), conda's record of it included."""
    prefix, wanted = sys.prefix, {canonical(n) for n in names}
    records = [(path, [os.path.join(prefix, f) for f in rec.get("files", [])]) for path, rec in conda_meta(prefix)]
    out = {}
    for d in metadata.distributions():
        name = canonical(d.metadata["Name"])
        if name not in wanted or name in out:
            continue
        info = os.path.normpath(str(d._path)) if hasattr(d, "_path") else ""
        paths = {os.path.normpath(str(f.locate())) for f in d.files or []}
        paths = {p for p in paths if not info or not p.startswith(info + os.sep)} | ({info} if info else set())
        for record, listed in records:
            if info and any(f.startswith(info + os.sep) for f in listed):  # conda installed it
                paths |= {os.path.normpath(f) for f in listed if not f.startswith(info + os.sep)} | {record}
        out[name] = sorted(paths)
    return out


def main():
    if sys.argv[1:2] == ["--files"]:
        print(json.dumps({"files": installed_files(sys.argv[2:])}))
        return
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
                      "glibc": platform.libc_ver()[1] if platform.libc_ver()[0] == "glibc" else "",
                      "packages": packages, "installers": installers, "conda": conda, "changed": changed,
                      "relocated": relocated, "blas": libs, "blas_error": why,
                      "folders": folders(prefix)}))


if __name__ == "__main__":
    main()

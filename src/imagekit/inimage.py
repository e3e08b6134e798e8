"""imagekit's own code run inside any image: where it is copied, and how it is started, so that an
image imagekit did not build (a team's image on rayproject/ray or docker-stacks) is checked as it is.

The code (in_image/, package data, never imported here) is copied into the container at run time.
It runs with the image's own Python, the one on PATH (else python3), never through the image's
default command, and through the image's entrypoint where it has one (docker-stacks' start.sh runs the
hooks that set the environment up; tini reaps), with the command replaced.
"""
from __future__ import annotations

from pathlib import Path

HERE, IN = Path(__file__).parent / "in_image", "/tmp/imagekit"  # the code, and where it goes in a container
SERVING, SERVING_IN = HERE / "serving", f"{IN}/serving"  # the Ray side: model server and checks
INITS = {"tini", "tini-static", "dumb-init"}  # an init in an entrypoint: PID 1's job, not an exec's
RESOLVE = 'p=$(command -v python || command -v python3) || { echo "imagekit: no python on PATH" >&2; exit 127; }; exec "$p" "$@"'
SERVE = """import sys
if sys.version_info < (3, 8):
    sys.exit("imagekit: needs Python 3.8 or newer; this image has %s" % sys.version.split()[0])
try:
    from ray.serve.scripts import cli
except ImportError as e:
    sys.exit("imagekit: this image has no ray[serve] (%s: %s)" % (type(e).__name__, e))
sys.exit(cli())
"""  # `serve run CONFIG` with the image's Python; what the image lacks for it, said in one line
# `jupyter nbconvert --to notebook --execute NOTEBOOK` as nbconvert does it (nbclient, a fresh kernel in the
# notebook's folder; a failing cell raises with its traceback, exit 1), without loading nbconvert's exporters
# (1 s of CPU per notebook) or rfc3987_syntax: jsonschema's optional IRI format checker (nbformat's schema uses
# no such format) compiles a Lark grammar when imported, 1.8 s more
EXECUTE = """import os, sys
sys.modules['rfc3987_syntax'] = None
import nbformat
from nbclient import NotebookClient
path = os.path.abspath(sys.argv[1])
NotebookClient(nbformat.read(path, as_version=4), resources={'metadata': {'path': os.path.dirname(path)}}).execute()
"""


def python(*args: str, path: str = "") -> list[str]:
    """``python ARGS`` with the image's Python (``path``: a folder put first on PYTHONPATH)."""
    prefix = f'export PYTHONPATH={path}${{PYTHONPATH:+:$PYTHONPATH}}; ' if path else ""
    return ["sh", "-c", prefix + RESOLVE, "imagekit", *args]


def serving() -> dict[str, Path]:
    """The Ray side's files as a container input: in-container path -> host file."""
    return {f"{SERVING_IN}/{f.name}": f for f in sorted(SERVING.iterdir()) if f.suffix in (".py", ".yaml")}


def entrypoint(config: dict) -> list[str]:
    """What a command exec'd in a container of the image goes through: its entrypoint (docker-stacks'
    ``tini -g -- start.sh``: start.sh, which runs the hooks), without an init that only PID 1 needs."""
    entry = list(config.get("Entrypoint") or [])
    if entry and Path(entry[0]).name in INITS:
        entry = entry[entry.index("--") + 1:] if "--" in entry else [a for a in entry[1:] if not a.startswith("-")]
    return entry


def ran_nothing(ref: str, config: dict, output: str) -> str:
    """Why a command given to ``ref`` gave no answer: its entrypoint did not run it."""
    entry = config.get("Entrypoint") or []
    said = " ".join(output.split())[-300:] or "it printed nothing"
    if entry:
        return (f"the image {ref} has an entrypoint ({' '.join(entry)}) that ran without running the command it "
                f"was given ({said})")
    return f"the image {ref} did not run the command it was given ({said})"

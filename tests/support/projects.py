"""Small wheels and projects for the tests: a wheel made by hand, an imagekit.toml with images/."""
from __future__ import annotations

import base64
import hashlib
import textwrap
import zipfile
from pathlib import Path


def make_wheel(folder: Path, name: str, version: str, *, requires: tuple[str, ...] = (),
               requires_python: str | None = None, modules: dict[str, str] | None = None) -> Path:
    """Write a minimal pure-Python wheel (METADATA, WHEEL, RECORD and one module, and ``modules``:
    more files of the package by name)."""
    dist = f"{name.replace('-', '_')}-{version}"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
            *(f"Requires-Dist: {r}" for r in requires)]
    if requires_python:
        meta.append(f"Requires-Python: {requires_python}")
    files = {f"{name.replace('-', '_')}/__init__.py": f"VERSION = {version!r}\n",
             **{f"{name.replace('-', '_')}/{m}": text for m, text in (modules or {}).items()},
             f"{dist}.dist-info/METADATA": "\n".join(meta) + "\n",
             f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record + [f"{dist}.dist-info/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), text)
    return wheel


def write_project(root: Path, toml: str | None = None, requirements: dict[str, str] | None = None) -> Path:
    """A project folder with imagekit.toml (defaults: base -> ray, notebook) and requirements.in files."""
    toml = toml if toml is not None else textwrap.dedent("""
        [[environments]]
        name = "desa"
        project = "mlops-desa"
        [[environments]]
        name = "prod"
        project = "mlops-prod"
        [[images]]
        name = "base"
        [[images]]
        name = "ray"
        parent = "base"
        [[images]]
        name = "notebook"
        parent = "base"
        """)
    root.mkdir(parents=True, exist_ok=True)
    (root / "imagekit.toml").write_text(toml)
    for name, text in (requirements or {"base": "", "ray": "", "notebook": ""}).items():
        (root / "images" / name).mkdir(parents=True, exist_ok=True)
        (root / "images" / name / "requirements.in").write_text(text)
    return root / "imagekit.toml"


def on_vendor_bases(source: str | Path, root: Path, bases: dict[str, str], *, copy: bool = False) -> Path:
    """The project of ``source`` (imagekit.toml) in ``root`` with images built on vendor bases (name -> REF:
    ``base``, the context images/<name>-vendor, the requirements of images/<name>, the repository
    <repository>-on-vendor), its own out/; its
    images/, lockfiles/ and examples/ linked (``copy``: copied, to change them). Returns its imagekit.toml."""
    text = Path(source).read_text()
    for name, ref in bases.items():  # repositories of their own: the local tags of the project's images stay
        repo = "scipy-notebook" if name == "notebook" else name
        head = f'name = "{name}"\n' + (f'repository = "{repo}"\n' if repo != name else "") + 'parent = "base"\n'
        assert head in text, f"no [[images]] {name} with parent base in {source}"
        text = text.replace(head, f'name = "{name}"\nrepository = "{repo}-on-vendor"\nparent = "base"\n'
                                  f'base = "{ref}"\ncontext = "images/{name}-vendor"\n'
                                  f'requirements = "images/{name}/requirements.in"\n')
    return elsewhere(source, root, text, copy=copy)


def elsewhere(source: str | Path, root: Path, text: str, *, copy: bool = False,
              folders: tuple[str, ...] = ("images", "lockfiles", "examples")) -> Path:
    """``text`` as the imagekit.toml of a project in ``root``, with the ``folders`` of the project of ``source``
    (its imagekit.toml) linked (``copy``: copied, links followed, to change them). Returns its imagekit.toml."""
    import shutil

    source = Path(source).resolve()  # links from root to where the folders are, whatever the working folder
    root.mkdir(parents=True, exist_ok=True)
    (root / "imagekit.toml").write_text(text)
    for folder in folders:
        if copy:
            shutil.copytree(source.parent / folder, root / folder)  # links followed: images/ray/serving
        else:
            (root / folder).symlink_to(source.parent / folder)
    return root / "imagekit.toml"

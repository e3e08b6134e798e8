"""Grouping packages into layers, and layer tars whose bytes depend on the files alone."""
import hashlib
import io
import os
import tarfile
from pathlib import Path

from imagekit import layers, tars
from imagekit.lock import Pin


def pins(*names):
    return [Pin(n, "1.0", (f"sha256:{hashlib.sha256(n.encode()).hexdigest()}",)) for n in names]


NAMES = ["numpy", "scipy", "joblib", "six", "click", "pyyaml", "idna", "certifi", "packaging", "attrs"]
SIZES = {"numpy": 17_000_000, "scipy": 35_000_000} | {n: 300_000 for n in NAMES[2:]}


def test_large_distributions_are_alone_and_the_rest_share_hashed_buckets():
    groups = layers.plan(pins(*NAMES), SIZES, alone_bytes=4_000_000, buckets=3)
    assert [g.name for g in groups[:2]] == ["numpy", "scipy"] and all(len(g.pins) == 1 for g in groups[:2])
    small = groups[2:]
    assert all(g.name.startswith("small-") for g in small) and len(small) <= 3
    assert sorted(p.name for g in small for p in g.pins) == sorted(NAMES[2:])


def test_a_lineages_large_layers_are_at_the_bottom_eldest_first_and_its_small_ones_on_top_eldest_last():
    def made(*groups):
        return [layers.Layer(g, f"sha256:{g}", 1, (), Path(g), True) for g in groups]
    parent, own = made("venv", "numpy", "small-0", "small-1"), made("jupyterlab", "small-0")
    stack = layers.stacked(parent, own)
    assert [l.diff_id for l in stack] == ["sha256:venv", "sha256:numpy", "sha256:jupyterlab", "sha256:small-0",
                                          "sha256:small-0", "sha256:small-1"]
    assert stack[3] is own[1] and stack[4:] == parent[2:]  # the parent's small ones the very top
    grandchild = layers.stacked(stack, made("tool", "small-3"))
    assert [l.group for l in grandchild][3:5] == ["tool", "small-3"] and grandchild[-2:] == parent[2:]
    assert layers.stacked([], parent) == parent  # an image on the OS image: as planned
    small_only = made("small-2")
    assert layers.stacked(parent, small_only) == [*parent, *small_only]  # nothing large: on the parent's chain whole


def test_a_bump_or_an_addition_changes_only_the_layer_of_that_package():
    before = {g.name: g for g in layers.plan(pins(*NAMES), SIZES, alone_bytes=4_000_000, buckets=3)}
    bumped = [Pin(p.name, "2.0" if p.name == "joblib" else p.version, p.hashes) for p in pins(*NAMES)]
    after = {g.name: g for g in layers.plan(bumped, SIZES, alone_bytes=4_000_000, buckets=3)}
    changed = [n for n in before if before[n] != after[n]]
    assert len(changed) == 1 and any(p.name == "joblib" for p in after[changed[0]].pins)
    added = {g.name: g for g in layers.plan(pins(*NAMES, "zipp"), SIZES | {"zipp": 1000}, alone_bytes=4_000_000,
                                            buckets=3)}
    assert len([n for n in added if added[n] != before.get(n)]) == 1


def tree(root, mtime):
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("A = 1\n")
    (root / "pkg" / "b.py").write_text("B = 2\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_text("#!/opt/venv/bin/python\n")
    (root / "bin" / "tool").chmod(0o755)
    os.symlink("tool", root / "bin" / "alias")
    for p in [root, *root.rglob("*")]:
        os.utime(p, (mtime, mtime), follow_symlinks=False)


def test_the_same_files_give_the_same_layer_whatever_their_times_and_owners(tmp_path):
    tree(tmp_path / "one", 1_000_000)
    tree(tmp_path / "two", 2_000_000_000)
    blobs = []
    for name in ("one", "two"):
        buf = io.BytesIO()
        tars.write_tar(buf, tmp_path / name, "opt/venv")
        blobs.append(buf.getvalue())
    assert blobs[0] == blobs[1]
    with tarfile.open(fileobj=io.BytesIO(blobs[0])) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:2] == ["opt", "opt/venv"] and names[2:] == sorted(names[2:])
    assert {m.mtime for m in members} == {tars.MTIME} and {(m.uid, m.gid) for m in members} == {(0, 0)}
    assert next(m for m in members if m.name.endswith("bin/tool")).mode == 0o755
    assert next(m for m in members if m.name.endswith("bin/alias")).linkname == "tool"
    assert all("atime" not in m.pax_headers and "ctime" not in m.pax_headers for m in members)
    (tmp_path / "two" / "pkg" / "b.py").write_text("B = 3\n")  # and the check can fail: content counts
    buf = io.BytesIO()
    tars.write_tar(buf, tmp_path / "two", "opt/venv")
    assert buf.getvalue() != blobs[0]


def tree_under_umask(root, mask):
    """A venv-like tree made by code running under ``mask`` (as an installer would)."""
    old = os.umask(mask)
    try:
        (root / "lib" / "site-packages" / "pkg").mkdir(parents=True)
        (root / "bin").mkdir()
        (root / "lib" / "site-packages" / "pkg" / "__init__.py").write_text("x = 1\n")
        script = root / "bin" / "tool"
        script.write_text("#!/bin/sh\necho tool\n")
        script.chmod(0o777 & ~mask)  # executable, as far as the umask lets it be
    finally:
        os.umask(old)
    return root


def test_layer_bytes_do_not_depend_on_the_umask_the_tree_was_made_under(tmp_path):
    made = {}
    for mask in (0o002, 0o022):
        tree = tree_under_umask(tmp_path / f"umask-{mask:o}", mask)
        buf = io.BytesIO()
        tars.write_tar(buf, tree, "opt/venv")
        made[mask] = buf.getvalue()
    assert os.stat(tmp_path / "umask-2" / "bin").st_mode & 0o777 == 0o775  # the trees do differ
    assert hashlib.sha256(made[0o002]).digest() == hashlib.sha256(made[0o022]).digest()
    modes = {m.name: m.mode for m in tarfile.open(fileobj=io.BytesIO(made[0o002]))}
    assert modes["opt/venv/bin/tool"] == 0o755 and modes["opt/venv/lib/site-packages/pkg/__init__.py"] == 0o644
    assert modes["opt/venv/bin"] == 0o755


def test_a_corrupted_layer_cache_entry_is_detected_before_it_goes_into_an_image(tmp_path):
    group = layers.Group("small-0", tuple(pins("six")))
    tree = tree_under_umask(tmp_path / "tree", 0o022)
    layer = layers._record(tmp_path, group, "k" * 64, ["six"], lambda f: tars.write_tar(f, tree, "opt/venv"))
    assert layer.diff_id == "sha256:" + hashlib.sha256(layer.path.read_bytes()).hexdigest()  # hashed as written
    assert layers.cached(tmp_path, group, "k" * 64, verify=True).diff_id == layer.diff_id
    os.utime(layer.path, ns=(1, 1))  # touched, the same bytes: hashed, and still the layer
    assert layers.cached(tmp_path, group, "k" * 64, verify=True).diff_id == layer.diff_id
    data = bytearray(layer.path.read_bytes())
    data[-2000] ^= 0xFF  # one byte of the tar, the same size
    layer.path.write_bytes(bytes(data))
    found = layers.cached(tmp_path, group, "k" * 64, verify=True)
    assert isinstance(found, str) and "is corrupted" in found and layer.diff_id[:19] in found
    assert layers.cached(tmp_path, group, "k" * 64).diff_id == layer.diff_id  # lookups that use no tar do not hash


VENDOR = tars.Prefix(path="/home/ray/anaconda3", python="/home/ray/anaconda3/bin/python", venv=False,
                     folders=(("/home", 0o755, 0, 0), ("/home/ray", 0o750, 1000, 100),
                              ("/home/ray/anaconda3", 0o2775, 1000, 100)))


def test_a_layer_for_a_vendor_prefix_keeps_its_folders_owners_and_modes(tmp_path):
    tree(tmp_path / "t", 1_000_000)
    buf = io.BytesIO()
    tars.write_tar(buf, tmp_path / "t", VENDOR.path.strip("/"), owners=VENDOR)
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(buf.getvalue()))}
    assert (members["home"].mode, members["home"].uid) == (0o755, 0)  # above the prefix: as the base has them
    assert (members["home/ray"].mode, members["home/ray"].uid, members["home/ray"].gid) == (0o750, 1000, 100)
    assert (members["home/ray/anaconda3/pkg"].mode, members["home/ray/anaconda3/pkg"].uid) == (0o2775, 1000)
    tool, module = members["home/ray/anaconda3/bin/tool"], members["home/ray/anaconda3/pkg/a.py"]
    assert (tool.mode, module.mode, module.uid, module.gid) == (0o775, 0o664, 1000, 100)  # group-writable prefix


def test_a_whiteout_layer_removes_each_path_and_keeps_the_folders_on_the_way(tmp_path):
    site = "/home/ray/anaconda3/lib/python3.11/site-packages"
    gone = [f"{site}/sqlparse-0.4.0.dist-info", f"{site}/sqlparse/legacy_only.py",
            "/home/ray/anaconda3/conda-meta/sqlparse-0.4.0-py_0.json"]
    layer = layers.write_whiteouts(tmp_path, layers.Group("vendor-removals", ()), "k", gone, VENDOR)
    members = {m.name: m for m in tarfile.open(layer.path)}
    assert {n for n in members if "/.wh." in n} == {
        f"{site[1:]}/.wh.sqlparse-0.4.0.dist-info", f"{site[1:]}/sqlparse/.wh.legacy_only.py",
        "home/ray/anaconda3/conda-meta/.wh.sqlparse-0.4.0-py_0.json"}
    assert all(m.isfile() and m.size == 0 for n, m in members.items() if "/.wh." in n)
    assert members["home/ray"].uid == 1000 and members[f"{site[1:]}/sqlparse"].isdir()
    assert layer.diff_id.startswith("sha256:") and layers.cached(tmp_path, layers.Group("vendor-removals", ()), "k")


def test_the_install_containers_layer_maker_compiles_what_compiles_and_says_what_does_not(tmp_path):
    """in_image/make_layers.py, run here as the install container runs it (beside tars.py): a layer per tree,
    each file compiled for its path in the image, the same bytes as tars.write_tar of the compiled tree."""
    import json
    import shutil
    import subprocess
    import sys
    for code in (layers.MAKE_LAYERS, tars.__file__):
        shutil.copy(code, tmp_path)
    trees = tmp_path / "trees"
    tree_under_umask(trees / "small-0", 0o022)
    (trees / "broken" / "lib").mkdir(parents=True)
    (trees / "broken" / "lib" / "bad.py").write_text("def (:\n")
    plan = {"trees": str(trees), "layers": str(tmp_path / "layers"), "groups": ["small-0", "broken"],
            "prefix": {"path": "/opt/venv", "python": "/opt/venv/bin/python", "venv": True, "folders": []}}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    subprocess.run([sys.executable, tmp_path / "make_layers.py", tmp_path / "plan.json"], check=True,
                   env={**os.environ, "PYTHONHASHSEED": "0"})
    report = json.loads((tmp_path / "layers" / "report.json").read_text())
    assert report["uncompiled"] == {"broken": ["/opt/venv/lib/bad.py"]}
    members = {m.name: m for m in tarfile.open(tmp_path / "layers" / "small-0.tar")}
    pyc = next(n for n in members if n.endswith(".pyc"))
    assert pyc.startswith("opt/venv/lib/site-packages/pkg/__pycache__/__init__.")
    pyc_bytes = tarfile.open(tmp_path / "layers" / "small-0.tar").extractfile(pyc).read()
    assert b"/opt/venv/lib/site-packages/pkg/__init__.py" in pyc_bytes  # named as the image has it
    buf = io.BytesIO()
    tars.write_tar(buf, trees / "small-0", "opt/venv")
    assert (tmp_path / "layers" / "small-0.tar").read_bytes() == buf.getvalue()


def test_a_stream_of_chunks_reads_as_the_file_it_came_from():
    data = os.urandom(300_000)
    cuts = [0, 1, 7, 65_536, 65_537, 200_000, 300_000]
    chunks = (data[a:b] for a, b in zip(cuts, cuts[1:]))
    assert io.BufferedReader(tars.Chunks(chunks), 4096).read() == data

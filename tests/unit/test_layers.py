"""Grouping packages into layers, and layer tars whose bytes depend on the files alone."""
import hashlib
import io
import os
import tarfile

from imagekit import layers
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
        layers.write_tar(buf, tmp_path / name, "opt/venv")
        blobs.append(buf.getvalue())
    assert blobs[0] == blobs[1]
    with tarfile.open(fileobj=io.BytesIO(blobs[0])) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[:2] == ["opt", "opt/venv"] and names[2:] == sorted(names[2:])
    assert {m.mtime for m in members} == {layers.MTIME} and {(m.uid, m.gid) for m in members} == {(0, 0)}
    assert next(m for m in members if m.name.endswith("bin/tool")).mode == 0o755
    assert next(m for m in members if m.name.endswith("bin/alias")).linkname == "tool"
    assert all("atime" not in m.pax_headers and "ctime" not in m.pax_headers for m in members)
    (tmp_path / "two" / "pkg" / "b.py").write_text("B = 3\n")  # and the check can fail: content counts
    buf = io.BytesIO()
    layers.write_tar(buf, tmp_path / "two", "opt/venv")
    assert buf.getvalue() != blobs[0]

"""What `docker load` is sent: the layers above what an image of the same name holds, all of them
when that image goes meanwhile (a fake engine: the real one is in tests/integration/test_layers.py)."""
import io
import tarfile
from pathlib import Path

import pytest

from imagekit import assembly
from imagekit.engine import ImageInfo
from imagekit.errors import EngineError
from imagekit.layers import Layer

PARENT = ImageInfo(id="sha256:p", labels={}, size=0, layers=("sha256:os",), repo_digests=(), architecture="amd64")


class Engine:
    def __init__(self, held: tuple[str, ...], fail_first: bool):
        self.held, self.fail_first, self.sent, self.loaded = held, fail_first, [], None

    def image(self, ref):
        return PARENT if ref == "parent" else self.loaded if ref == "new" else None

    def history(self, ref):
        return [{"created": "1980-01-01T00:00:00Z", "created_by": "os"}]

    def labelled(self, *labels):
        assert "org.imagekit.image=x" in labels
        return [ImageInfo(id="sha256:h", labels={}, size=0, layers=self.held, repo_digests=(), architecture="amd64")]

    def load(self, chunks):
        data = b"".join(chunks)  # the archive, streamed
        if not data.endswith(bytes(1024)):  # a tar ends with two zero blocks
            raise EngineError("docker load failed: unexpected EOF")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            self.sent.append(sorted(n.split("/")[0] for n in tar.getnames() if n.endswith("layer.tar")))
            if self.fail_first and len(self.sent) == 1:
                raise EngineError("docker load failed: open layer.tar: no such file")
            config = next(n for n in tar.getnames() if n.endswith(".json") and n != "manifest.json")
            self.loaded = ImageInfo(id=f"sha256:{config[:-5]}", labels={}, size=0, layers=(), repo_digests=(),
                                    architecture="amd64")


def layers(tmp_path: Path) -> list[Layer]:
    made = []
    for n in ("a", "b", "c"):
        (tmp_path / f"{n}.tar").write_bytes(b"")
        made.append(Layer(n, f"sha256:{n * 64}", 0, (), tmp_path / f"{n}.tar", True))
    return made


@pytest.mark.parametrize("held, fail_first, sent", [
    (("sha256:os", "sha256:" + "a" * 64, "sha256:x"), False, [["b" * 64, "c" * 64]]),
    (("sha256:os", "sha256:" + "a" * 64), True, [["b" * 64, "c" * 64], ["a" * 64, "b" * 64, "c" * 64]]),
    (("sha256:other",), False, [["a" * 64, "b" * 64, "c" * 64]]),
])
def test_the_load_is_sent_the_layers_no_image_of_the_name_holds(tmp_path, held, fail_first, sent):
    engine = Engine(held, fail_first)
    assembly.assemble(engine, "parent", layers(tmp_path), "new", labels={"org.imagekit.image": "x"})
    assert engine.sent == sent


def test_a_layer_tar_that_cannot_be_read_is_the_error_not_the_engines_truncated_archive(tmp_path):
    made = layers(tmp_path)
    made[1].path.unlink()
    with pytest.raises(FileNotFoundError, match="b.tar"):
        assembly.assemble(Engine(("sha256:other",), False), "parent", made, "new", labels={"org.imagekit.image": "x"})

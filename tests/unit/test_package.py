"""The host package: every module imports without the images' packages; the code that runs inside
the images is data beside it, not a module."""
import importlib
import pkgutil
from pathlib import Path

import imagekit


def test_every_module_imports_on_the_host_and_in_image_code_is_not_a_module():
    names = [m.name for m in pkgutil.walk_packages(imagekit.__path__, "imagekit.") if m.name != "imagekit.__main__"]
    for name in names:
        importlib.import_module(name)  # no numpy, scikit-learn or jupyterhub on the host needed
    assert "imagekit.verify.roundtrip" in names and not any("in_image" in n or "publish" in n for n in names)
    in_image = Path(imagekit.__file__).parent / "in_image"
    assert {p.name for p in in_image.glob("*.py")} == {"imagekit_publish.py", "imagekit_mlflow.py", "jupyterhub_config.py"}

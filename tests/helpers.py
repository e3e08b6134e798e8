"""Test helpers shared by unit and integration tests (the rest lives in imagekit.testing, which the
benchmarks use too)."""
from __future__ import annotations

from pathlib import Path

import pytest

from imagekit.testing import RegistryProcess, make_htpasswd, make_tls, make_wheel, seed_image, write_project

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["ROOT", "RegistryProcess", "make_htpasswd", "make_tls", "make_wheel", "run_cli", "seed_image",
           "write_project"]


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run ``imagekit ARGS`` through the real entry point; return exit code, stdout, stderr."""
    from imagekit.cli import main

    monkeypatch.setattr("sys.argv", ["imagekit", *args])
    with pytest.raises(SystemExit) as e:
        main()
    captured = capsys.readouterr()
    return e.value.code or 0, captured.out, captured.err

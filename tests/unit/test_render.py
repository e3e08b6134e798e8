"""Result tables in a CI log and on a narrow terminal: every failing item's full name and whole reason
on one line when the output is piped; no identifier cut with an ellipsis on a terminal of 60 columns."""
import json
import os
import pty
import subprocess
import sys
import textwrap

import pytest

MODEL = "custom-v1@20261205T101010Z"
REASON = "trained and served in different environments: scikit-learn: trained with 1.9.1, serving with 1.8.0"
DIGEST = "sha256:" + "d" * 64
FAKES = textwrap.dedent(f'''
    import sys
    from imagekit import diff, facts, history, promote, runtime, status
    from imagekit.verify import compat, mlflowstore, roundtrip, static, stored
    from imagekit.verify.subjects import Subject
    import imagekit.cli.environments as env_cli, imagekit.cli.promote as promote_cli
    import imagekit.cli.runtime as runtime_cli, imagekit.cli.verify as verify_cli

    REASON, MODEL, DIGEST = {REASON!r}, {MODEL!r}, {DIGEST!r}
    model = stored.StoredModel(MODEL, False, REASON, ["scikit-learn: trained with 1.9.1, serving with 1.8.0"],
                               True, False, None, [], "head", False, 1.0)
    lake = stored.StoredReport("stand-in", "sha256:1", "", 100, [model], 1, 0, ["head"], 2.0)
    outcome = mlflowstore.Outcome("intrusion/12", "models:/intrusion/12", ["intrusion@champion"],
                                  ["scikit-learn: logged with 1.9.1, serving with 1.8.0"], True, True, False, None, REASON)
    registry = mlflowstore.RegistryReport("http://mlflow", "ray", "base", [mlflowstore.RegistryModel(outcome, "", [], "")], 1.0)
    held = facts.ImageFacts("x", "ray", "3.11.2", {{}})
    trip = roundtrip.RoundtripReport("s3", "v", [roundtrip.ScenarioResult(MODEL, False, REASON, None, [], 1.0, 1.0)], 1.0, 1.0)
    verify = compat.VerifyReport(Subject("notebook", "nb", "mlops-desa/scipy-notebook", DIGEST),
                                 Subject("ray", "ray", "mlops-desa/ray", DIGEST), static.StaticReport(held, held, []), trip)
    contract = runtime.ContractReport("ray", "nb", [runtime.Item("ray", "head: KubeRay raylet probe (52365)", False, REASON)])
    statuses = [status.EnvironmentStatus("prod", "mlops-prod", False, [status.ImageStatus(
        "ray", "harbor.example.org/mlops-prod/ray", "2.41.0-py311-sunat-v15", DIGEST, DIGEST, False, {{}}, REASON)])]
    change = diff.Change("scikit-learn", "1.9.1", "1.8.0", "changed", "high", "models pickle its classes")
    diffs = [diff.ImageDiff("ray", f"harbor.example.org/mlops-test/ray@{DIGEST}", f"harbor.example.org/mlops-prod/ray@{DIGEST}",
                            False, ("3.11.2", "3.11.2"), ("a" * 64, "b" * 64), [change])]
    promoted = [promote.Promotion("ray", "promote", "harbor.example.org/mlops-test/ray", "harbor.example.org/mlops-prod/ray",
                                  DIGEST, ["2.41.0-py311-sunat-v15", "current"])]
    env_cli.diff_core.diff = lambda *a, **k: diffs
    promote_cli.core.promote = lambda *a, **k: promoted
    verify_cli.verify_stored = lambda *a, **k: lake
    verify_cli.verify_mlflow = lambda *a, **k: registry
    verify_cli.verify_compat = lambda *a, **k: verify
    verify_cli.Engine.connect = classmethod(lambda cls: None)
    runtime_cli.runtime.check_pair = lambda *a, **k: contract
    env_cli.status_core.status = lambda *a, **k: statuses
    from imagekit.cli import main
    sys.argv = ["imagekit", "--config", sys.argv[1], *sys.argv[2:]]
    main()
''')
COMMANDS = {"verify-stored": ([], MODEL), "verify-stored --mlflow-uri http://mlflow": (["--mlflow-uri"], "intrusion/12"),
            "verify-compat": ([], f"round trip {MODEL}"), "runtime-check": ([], "ray: head: KubeRay raylet probe (52365)"),
            "status": ([], f"harbor.example.org/mlops-prod/ray@{DIGEST}")}
FULL_LINES = {"diff --env test --env prod": ("harbor.example.org/mlops-prod/ray@" + DIGEST, "scikit-learn"),
              "promote --all --to prod": ("harbor.example.org/mlops-prod/ray@" + DIGEST, "2.41.0-py311-sunat-v15")}


def run(tmp_path, args: str, *, terminal: bool, columns: int = 200) -> str:
    from support import write_project

    script = tmp_path / "fake.py"
    script.write_text(FAKES)
    cmd = [sys.executable, str(script), str(write_project(tmp_path / "p")), *args.split()]
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "xterm"}
    if not terminal:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60).stdout
    leader, follower = pty.openpty()
    done = subprocess.run(cmd, stdin=follower, stdout=follower, stderr=follower, env=env, timeout=60)
    os.close(follower)
    chunks = []
    try:
        while data := os.read(leader, 65536):
            chunks.append(data)
    except OSError:  # the follower closed: all was read
        pass
    os.close(leader)
    assert done.returncode in (0, 1)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("args", list(COMMANDS))
def test_piped_every_failing_item_and_its_whole_reason_are_on_one_line(tmp_path, args):
    text = run(tmp_path, args, terminal=False)
    name = COMMANDS[args][1]
    line = next((line for line in text.splitlines() if name in line), "")
    assert line.startswith("FAIL  ") and "scikit-learn" in line and "1.8.0" in line, text


@pytest.mark.parametrize("args", list(COMMANDS))
def test_on_a_60_column_terminal_no_identifier_is_cut(tmp_path, args):
    text = run(tmp_path, args, terminal=True, columns=60)
    assert "…" not in text and COMMANDS[args][1] in text, text  # whole, in one piece


def test_a_wide_terminal_gets_a_table_with_the_whole_identifier(tmp_path):
    text = run(tmp_path, "verify-stored", terminal=True, columns=200)
    assert "┃" in text or "│" in text  # a table
    assert MODEL in text and "…" not in text


def test_the_json_is_unchanged_by_the_rendering(tmp_path):
    report = json.loads(run(tmp_path, "verify-stored --json", terminal=False))["result"]
    assert report["models"][0]["name"] == MODEL and report["models"][0]["reason"] == REASON


@pytest.mark.parametrize("args", list(FULL_LINES))
def test_diff_and_promote_lines_carry_whole_references_piped_and_on_a_narrow_terminal(tmp_path, args):
    for text in (run(tmp_path, args, terminal=False), run(tmp_path, args, terminal=True, columns=60)):
        ref, what = FULL_LINES[args]
        assert "…" not in text and any(ref in line for line in text.replace("\r", "").splitlines()), text
        assert what in text

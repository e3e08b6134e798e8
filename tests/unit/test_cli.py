import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from imagekit.cli import app


def test_the_cli_has_exactly_its_commands_each_with_help():
    commands = typer.main.get_command(app).commands
    assert set(commands) == {"lock", "os", "build", "push", "verify-compat", "verify-stored", "runtime-check", "promote", "history", "rollback",
                             "diff", "status", "manifests", "keys", "doctor"}
    for name in commands:
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0 and "Usage: " in result.output and "Example: " in result.output, name


def test_lock_json_and_check_exit_codes(indexed, monkeypatch, cli):
    cfg = indexed()
    monkeypatch.setenv("IMAGEKIT_LOCK_INDEX_URL", cfg.lock.index_url)
    code, out, _ = cli("--config", cfg.source, "lock", "--json")
    done = json.loads(out)
    assert code == 0 and done["ok"] is True and done["error"] is None and done["result"]["packages"] == 4
    cfg.image("ray").requirements.write_text("extra-tool\nsoupy\n")
    code, _, err = cli("--config", cfg.source, "lock", "--check")
    assert code == 1
    assert "images/ray/requirements.in changed" in err and "hint: run `imagekit lock`" in err
    code, out, _ = cli("--config", cfg.source, "lock", "--check", "--json")  # the same shape, the failure as data
    failed = json.loads(out)
    assert code == 1 and set(failed) == set(done) == {"command", "ok", "result", "error"}
    assert failed["ok"] is False and failed["result"] is None and failed["error"]["kind"] == "CheckFailed"
    assert "images/ray/requirements.in changed since the lock was made" in failed["error"]["differences"]


def test_config_error_exits_2(tmp_path, cli):
    (tmp_path / "imagekit.toml").write_text('[registry]\nurll = "x"\n')
    code, _, err = cli("--config", str(tmp_path / "imagekit.toml"), "lock")
    assert code == 2 and "key 'registry.urll' in" in err
    code, out, _ = cli("--config", str(tmp_path / "imagekit.toml"), "lock", "--json")
    assert code == 2 and json.loads(out)["error"]["kind"] == "ConfigError"


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("imagekit 0.")


@pytest.mark.parametrize("which, other", [("one", "other"), ("other", "one")])
def test_each_test_starts_with_no_secret_registered_by_another(which, other):
    from imagekit import redact

    assert f"planted-{other}-secret" not in redact._secrets  # whichever instance ran first registered its own
    assert redact.text(f"planted-{other}-secret") == f"planted-{other}-secret"
    redact.register(f"planted-{which}-secret")
    assert redact.text(f"planted-{which}-secret") == redact.MASK


def test_an_unexpected_failure_is_an_error_with_the_json_envelope_never_a_traceback(monkeypatch, capsys, tmp_path):
    import imagekit.cli.verify as verify_cli
    from imagekit.cli import main
    from support import write_project

    def broken(*args, **kwargs):
        raise RuntimeError("container did not become running")
    monkeypatch.setattr(verify_cli, "verify_stored", broken)
    monkeypatch.setattr(verify_cli.Engine, "connect", classmethod(lambda cls: None))
    monkeypatch.setattr("sys.argv", ["imagekit", "--config", str(write_project(tmp_path)), "verify-stored", "--json"])
    with pytest.raises(SystemExit) as e:
        main()
    out, err = capsys.readouterr()
    assert e.value.code == 2 and "Traceback" not in out + err
    envelope = json.loads(out)
    assert envelope["ok"] is False and envelope["result"] is None and envelope["command"] == "verify-stored"
    assert envelope["error"]["kind"] == "InternalError"
    assert envelope["error"]["message"] == "imagekit failed unexpectedly: RuntimeError: container did not become running"


def test_the_browser_checks_without_a_browser_are_a_clear_exit_2(monkeypatch):
    """No chromium on PATH: refused before any container starts, saying what to install."""
    from imagekit import browser
    from imagekit.errors import PreconditionError

    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    with pytest.raises(PreconditionError) as e:
        browser.tools()
    assert e.value.exit_code == 2 and "apt-get install chromium chromium-driver" in str(e.value)


def ragged(text: str) -> list[str]:
    """Where a help's prose reads badly: a line that ends mid-sentence followed by a line of one or two
    words (a hard line break that survived the wrapping, or a word left alone by it)."""
    lines = [line.strip() for line in text.splitlines()]
    return [f"{a!r} / {b!r}" for a, b in zip(lines, lines[1:])
            if a and b and not a.endswith((".", ":", ";", "!", "?")) and len(b.split()) <= 2]


@pytest.mark.parametrize("columns", [80, 120])
def test_every_help_is_a_summary_a_paragraph_and_examples_that_read_cleanly(columns):
    commands = typer.main.get_command(app).commands
    listing = CliRunner().invoke(app, ["--help"], env={"COLUMNS": str(columns)}).output
    rows = [line for line in listing.split("Commands")[1].split("╰")[0].splitlines() if line.startswith("│")]
    assert [row.split()[1] for row in rows] == list(commands)  # the command list: one line each
    for name in ["", *commands]:
        text = CliRunner().invoke(app, [name, "--help"] if name else ["--help"], env={"COLUMNS": str(columns)}).output
        prose = "\n".join(line.strip() for line in text.split("╭")[0].splitlines()[3:])  # after the usage, before the panels
        assert ragged(prose) == [], (name, columns)
        assert all(len(line) <= columns for line in text.splitlines())
        if name:
            paragraphs = [p for p in prose.strip().split("\n\n")]
            assert len(paragraphs[0].splitlines()) == 1 and paragraphs[1] and paragraphs[-1].startswith("Example: "), name
    assert ragged("the Ray image as a KubeRay head and\nworker (KubeRay's)\nprobes") != []  # the check can fail


@pytest.mark.parametrize("name", sorted(typer.main.get_command(app).commands))
def test_every_command_refuses_a_bad_option_with_the_json_envelope_and_exit_2(cli, name):
    code, out, err = cli(name, "--no-such-option", "--json")
    envelope = json.loads(out)
    assert code == 2 and set(envelope) == {"command", "ok", "result", "error"}, err
    assert envelope["ok"] is False and envelope["result"] is None and envelope["command"] == name
    assert envelope["error"]["kind"] == "UsageError" and "--no-such-option" in envelope["error"]["message"]
    assert f"imagekit {name} --help" in envelope["error"]["hint"] and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (("build", "--builder", "docker", "--json"), "--builder: must be auto, buildkit or classic"),
    (("lock", "--check", "-P", "numpy", "--json"), "--check and --upgrade-package do not go together"),
    (("promote", "--all", "--json"), "Missing option '--to'"),
    (("verify-stored", "--batch-size", "many", "--json"), "Invalid value for '--batch-size'"),
])
def test_a_bad_value_is_refused_with_the_envelope_before_any_work(cli, project, args, message):
    code, out, _ = cli("--config", str(project()), *args)
    error = json.loads(out)["error"]
    assert code == 2 and error["kind"] == "UsageError" and message in error["message"], error


def test_keys_makes_a_pair_whose_private_key_no_git_add_can_commit(tmp_path, cli, monkeypatch):
    import subprocess

    from imagekit import attest
    from support import write_project

    path = write_project(tmp_path / "repo")
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    code, _, err = cli("--config", str(path), "keys", "--private", str(tmp_path / "repo" / "imagekit.key"))
    assert code == 2 and "a `git add -A` would commit the signing key" in err  # refused, nothing written
    assert not (tmp_path / "repo" / "imagekit.key").exists()
    code, out, _ = cli("--config", str(path), "keys", "--private", str(tmp_path / "secrets" / "imagekit.key"), "--json")
    made = json.loads(out)["result"]
    private, public = Path(made["private"]), Path(made["public"])
    assert code == 0 and public == tmp_path / "repo" / "keys" / "imagekit.pub" and oct(private.stat().st_mode)[-3:] == "600"
    assert attest.keyid(attest.load_private(str(private)).public_key()) == made["keyid"]
    code, _, err = cli("--config", str(path), "keys", "--private", str(private))
    assert code == 2 and "exists: a signing key is not replaced" in err

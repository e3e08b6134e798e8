"""What a verification must cover to count, read from the config: the verified set (the images
verify-compat proves together and promotion moves together), the scenarios, the scenarios the gate
requires of an attestation, and when a run is signed."""
from __future__ import annotations

import re

from imagekit.config import Config
from imagekit.errors import ConfigError
from imagekit.settings import VerifySettings

LIFECYCLE = "lifecycle"  # the scenario where a notebook deploys to a Ray head through Ray Client


def verified_set(cfg: Config) -> list[str]:
    """The images verify-compat proves together and promotion moves together (verify.images)."""
    shared = {i.name for i in cfg.images if i.shared}
    names = list(cfg.verify.verified_set)
    key = "verify.images" if cfg.verify.images else "verify.trainer and verify.server"
    for name in names:
        if name not in shared:
            raise ConfigError(f"'{name}' is not an image of this project (shared images: {', '.join(sorted(shared))})",
                              key=key, source=cfg.origins.get("verify.images"),
                              hint="name the images verify-compat proves together in verify.images")
    return names


def notebooks(folder) -> tuple[str, ...]:
    """The scenarios a folder holds: every notebook in it, by file stem."""
    return tuple(sorted(p.stem for p in folder.glob("*.ipynb")))


def scenarios_of(cfg: Config) -> tuple[str, ...]:
    """Every scenario: a notebook of verify.notebooks each (by file stem), then the lifecycle."""
    folder = cfg.path(cfg.verify.notebooks)
    if not folder.is_dir():
        raise ConfigError(f"scenario folder not found: {folder}", key="verify.notebooks",
                          source=cfg.origins.get("verify.notebooks"))
    return (*notebooks(folder), LIFECYCLE)


def required_scenarios(cfg: Config) -> list[tuple[str, str]]:
    """What the gate requires an attestation to cover: (scenario, pinned notebook sha256 or "").
    trust.required_scenarios ("name" or "name@sha256:<hex>"), else every notebook of verify.notebooks
    as imagekit.toml commits it (an IMAGEKIT_VERIFY_NOTEBOOKS pointing elsewhere does not lower it)."""
    entries = cfg.trust.required_scenarios
    if not entries:
        folder = cfg.path(cfg.committed.get("verify.notebooks", VerifySettings.notebooks))
        entries = notebooks(folder) if folder.is_dir() else ()
    found = []
    for entry in entries:
        name, _, digest = entry.partition("@")
        if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ConfigError(f"{entry!r}: pin a notebook as name@sha256:<64 hex digits>", key="trust.required_scenarios",
                              source=cfg.origins.get("trust.required_scenarios"))
        found.append((name, digest.removeprefix("sha256:")))
    return found


def not_recorded(report, *, write_record: bool, complete: bool, key) -> str:
    """Why a verify-compat run (its report) is not signed and attached ("" when it is): only a whole,
    passing run of at least one model scenario, of pushed images, with a signing key, vouches for the set."""
    if not report.ok:
        return "not recorded: a check failed"
    if not write_record:
        return "not recorded: --no-record"
    if not all(s.digest for s in (report.notebook, report.ray, *report.others)):
        return "not recorded: push the images first (`imagekit push`), records are kept next to their digests"
    if not complete:
        return "not recorded: only a subset of the scenarios ran"
    if not report.roundtrip.scenarios:
        return ("not recorded: no model scenario ran (verify.notebooks holds no notebook): a signature must say "
                "that models trained in the notebook image serve identically in the Ray image")
    if key is None:
        return ("not recorded: no signing key (set IMAGEKIT_TRUST_SIGNING_KEY to the private key's PEM or its file; "
                "docs/attestations.md, 'Signing keys')")
    return ""

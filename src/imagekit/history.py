"""An environment's history of promotions and rollbacks, kept in the registry itself (CI keeps no
state): one artifact per entry under a tag of its own, so concurrent writers never overwrite each
other, and the moving tag `current` settled from the whole history by whoever writes last."""
from __future__ import annotations

import datetime
import json
import secrets
import time
from dataclasses import asdict, dataclass

from imagekit.config import Config
from imagekit.errors import PreconditionError, RegistryError
from imagekit.inventory import MOVING_TAG, registry_for, repo
from imagekit.registry import Registry

HISTORY_PREFIX = "imagekit.history."
HISTORY_TYPE = "application/vnd.imagekit.history.v1+json"


@dataclass(frozen=True)
class HistoryEntry:
    kind: str  # "promote" or "rollback"
    digest: str
    tags: list[str]
    when: str
    source: str


@dataclass(frozen=True)
class Rollback:
    image: str
    source: str  # host/project/repository@digest it moved from
    target: str  # host/project/repository
    digest: str
    tags: list[str]
    kind: str = "rollback"
    seconds: float = 0.0


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


class Log:
    """A repository's history: one artifact per entry (``imagekit.history.<UTC time>-<random>``), read
    in tag (time) order. The moving tag is settled from it: each writer, after adding its entry, points
    `current` where the whole history says, until the history it read is the history there is."""

    def __init__(self, reg: Registry, repository: str) -> None:
        self.reg, self.repo, self._read = reg, repository, {}

    def entries(self) -> list[HistoryEntry]:
        tags = [t for t in self.reg.tags(self.repo) if t.startswith(HISTORY_PREFIX)]
        for tag in tags:
            if tag not in self._read:  # entries never change: each is read once
                self._read[tag] = HistoryEntry(**self.reg.get_artifact(self.repo, tag))
        return [self._read[t] for t in tags]

    def add(self, entry: HistoryEntry) -> None:
        stamp = entry.when.replace("-", "").replace(":", "").replace("+0000", "Z").replace("+00:00", "Z")
        tag = f"{HISTORY_PREFIX}{stamp}-{secrets.token_hex(4)}"
        self.reg.put_artifact(self.repo, tag, HISTORY_TYPE, json.dumps(asdict(entry), indent=1).encode())

    def settle(self) -> None:
        entries = self.entries()
        while True:
            stack = current_stack(entries)
            current = self.reg.manifest(self.repo, MOVING_TAG)
            if stack and (current is None or current.digest != stack[-1]):
                self.reg.put_manifest(self.repo, MOVING_TAG, self.reg.manifest(self.repo, stack[-1]))
            again = self.entries()
            if again == entries:
                return
            entries = again


def current_stack(entries: list[HistoryEntry]) -> list[str]:
    """The digests the moving tag went through: a promotion pushes, a rollback pops (never the last)."""
    stack: list[str] = []
    for e in entries:
        if e.kind != "rollback":
            stack.append(e.digest)
        elif len(stack) > 1:
            stack.pop()
    return stack


def log_of(cfg: Config, image: str, env: str) -> Log:
    """The history of ``image`` in ``env``, whose repository must exist."""
    environment = cfg.environment(env)
    reg, where = registry_for(cfg, environment), repo(cfg, environment, image)
    if not reg.tags(where):
        raise PreconditionError(f"{reg.host}/{where} does not exist: nothing was ever pushed or promoted there",
                                hint=f"check the image name and the environment (`{env}` is project "
                                     f"{environment.project}); promote into it first")
    return Log(reg, where)


def history(cfg: Config, image: str, env: str) -> list[HistoryEntry]:
    return log_of(cfg, image, env).entries()


def rollback(cfg: Config, image: str, env: str) -> Rollback:
    """Point the environment's moving tag back at the digest it named before; record it."""
    started = time.monotonic()
    log = log_of(cfg, image, env)
    reg, where = log.reg, log.repo
    stack = current_stack(log.entries())
    if len(stack) < 2:
        raise PreconditionError(f"nothing to roll back to: {where} has {len(stack)} promotion(s) in effect",
                                hint=f"see `imagekit history {image} --env {env}`")
    current, previous = stack[-1], stack[-2]
    if reg.manifest(where, previous) is None:
        raise RegistryError(f"{where}@{previous} is no longer in the registry; cannot roll back to it")
    log.add(HistoryEntry("rollback", previous, [MOVING_TAG], now(), f"rollback from {current}"))
    log.settle()
    return Rollback(image=image, source=f"{reg.host}/{where}@{current}", target=f"{reg.host}/{where}",
                    digest=previous, tags=[MOVING_TAG], seconds=round(time.monotonic() - started, 2))

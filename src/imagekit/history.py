"""An environment's history of promotions and rollbacks, kept in the registry itself (CI keeps no
state): one artifact per entry under a tag of its own, so concurrent writers never overwrite each
other, and the moving tag `current` settled from the whole history by whoever writes last.

The order is what each writer saw, never a clock: an entry names the entry it came after (its
predecessor), so a runner whose clock is behind cannot put a rollback before the promotion it undoes.
Entries written at the same moment after the same predecessor are ordered by their tags' random part,
the same way by every reader. Entries of earlier releases (no predecessor) come first, in time order."""
from __future__ import annotations

import dataclasses
import datetime
import json
import secrets
import time
from dataclasses import asdict, dataclass

from imagekit import attest, record
from imagekit.config import Config
from imagekit.errors import CheckFailed, PreconditionError, RegistryError, UsageError
from imagekit.inventory import MOVING_TAG, currents, pair_problems, registry_for, repo
from imagekit.registry import Registry
from imagekit.verify.policy import verified_set

HISTORY_PREFIX = "imagekit.history."
HISTORY_TYPE = "application/vnd.imagekit.history.v1+json"


@dataclass(frozen=True)
class HistoryEntry:
    kind: str  # "promote" or "rollback"
    digest: str
    tags: list[str]
    when: str  # the writer's clock: for people, never for the order
    source: str
    previous: str = ""  # the tag of the entry this one came after ("": the first)


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

    def tagged(self) -> list[tuple[str, HistoryEntry]]:
        """(tag, entry) in the history's order."""
        tags = [t for t in self.reg.tags(self.repo) if t.startswith(HISTORY_PREFIX)]
        for tag in tags:
            if tag not in self._read:  # entries never change: each is read once
                data = self.reg.get_artifact(self.repo, tag)
                if data is not None:  # None: listed before its manifest is linked; its writer settles after
                    self._read[tag] = (HistoryEntry(**data), "previous" in data)
        return ordered({t: self._read[t] for t in tags if t in self._read})

    def entries(self) -> list[HistoryEntry]:
        return [e for _, e in self.tagged()]

    def add(self, entry: HistoryEntry) -> None:
        """Add ``entry`` after the last entry there is now."""
        seen = self.tagged()
        entry = dataclasses.replace(entry, previous=seen[-1][0] if seen else "")
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


def ordered(read: dict[str, tuple[HistoryEntry, bool]]) -> list[tuple[str, HistoryEntry]]:
    """Tag -> (entry, whether it names its predecessor) in the history's order: each entry after the one
    it names; siblings by their tag's random part; entries of earlier releases first, by their tags' time."""
    legacy = sorted(t for t, (_, named) in read.items() if not named)
    after = {t: (e.previous if named else "") for t, (e, named) in read.items()}
    for earlier, later in zip(legacy, legacy[1:]):
        after[later] = earlier
    children: dict[str, list[str]] = {}
    for tag, previous in after.items():
        children.setdefault(previous if previous in read else "", []).append(tag)
    order, todo = [], sorted(children.get("", []), key=lambda t: t.rsplit("-", 1)[-1], reverse=True)
    while todo:  # depth first: an entry, then what came after it
        tag = todo.pop()
        order.append((tag, read[tag][0]))
        todo += sorted(children.get(tag, []), key=lambda t: t.rsplit("-", 1)[-1], reverse=True)
    return order


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


def rollback(cfg: Config, names: list[str], env: str, *, all_images: bool = False) -> list[Rollback]:
    """Point the environment's moving tag back at the digest it named before, for ``names`` (with
    ``all_images``: every image of the verified set that has an earlier one), all or nothing; recorded.
    The environment must then run a set one valid attestation names together, else nothing moves."""
    started, environment, members = time.monotonic(), cfg.environment(env), verified_set(cfg)
    if all_images == bool(names):
        raise UsageError("name the images to roll back, or pass --all (not both)", option="IMAGE")
    logs = {n: log_of(cfg, cfg.image(n).name, env) for n in (members if all_images else names)}
    moves = {}
    for name, log in logs.items():
        stack = current_stack(log.entries())
        if len(stack) >= 2:
            moves[name] = (stack[-1], stack[-2])
        elif not all_images:
            raise PreconditionError(f"nothing to roll back to: {log.repo} has {len(stack)} promotion(s) in effect",
                                    hint=f"see `imagekit history {name} --env {env}`")
    if not moves:
        raise PreconditionError(f"nothing to roll back to in {env}: no image has an earlier promotion in effect",
                                hint=f"see `imagekit history IMAGE --env {env}`")
    reg, public = logs[next(iter(moves))].reg, attest.trusted_key(cfg)
    for name, (_, previous) in moves.items():
        if reg.manifest(logs[name].repo, previous) is None:
            raise RegistryError(f"{logs[name].repo}@{previous} is no longer in the registry; cannot roll back to it")
    after = {**currents(cfg, reg, environment, members), **{n: previous for n, (_, previous) in moves.items()}}
    valid = {n: [(f, v) for f, v in record.verdicts(reg, logs[n].repo, previous, public)
                 if f.layout == record.CANONICAL and v.statement] for n, (_, previous) in moves.items()}
    problems = pair_problems(environment, after, valid, members, f"imagekit rollback --all --env {env}")
    if problems:
        raise CheckFailed(f"nothing was rolled back in {env}", differences=problems)
    done = []
    for name, (current, previous) in moves.items():
        logs[name].add(HistoryEntry("rollback", previous, [MOVING_TAG], now(), f"rollback from {current}"))
        logs[name].settle()
        done.append(Rollback(image=name, source=f"{reg.host}/{logs[name].repo}@{current}",
                             target=f"{reg.host}/{logs[name].repo}", digest=previous, tags=[MOVING_TAG],
                             seconds=round(time.monotonic() - started, 2)))
    return done

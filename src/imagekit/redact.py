"""Secrets never leave the process: every value registered here is masked wherever imagekit
writes or prints text (lock headers, errors, --json, logs), and credentials in URLs are stripped.
A secret is masked where it stands as itself (a URL's or a header's credential, a word of its own, a
tool echoing it), never inside another word: a password `test` leaves `mlops-test` alone, and an
all-hex one leaves the sha256 it happens to sit in (the lock's hashes never go through here).
Terminal escape codes that tools' output carries (a notebook's coloured traceback) are dropped too."""
from __future__ import annotations

import re
import urllib.parse

MASK = "***"
_secrets: set[str] = set()
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def register(secret: str) -> None:
    """Mask ``secret`` from now on (values shorter than 4 characters would mask common text)."""
    if secret and len(secret) >= 4:
        _secrets.add(secret)
        quoted = urllib.parse.quote(secret, safe="")
        if quoted != secret:
            _secrets.add(quoted)


def register_url(url: str) -> None:
    """Mask the password (or token) a URL carries in its userinfo."""
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        register(urllib.parse.unquote(parts.password))
        register(parts.password)
    elif parts.username and "@" in parts.netloc:  # a bare token as the user name
        register(urllib.parse.unquote(parts.username))


def strip_userinfo(url: str) -> str:
    """The URL without ``user:password@``: what may be written down."""
    return _USERINFO.sub(lambda m: m.group("scheme"), url)


def plain(value: str) -> str:
    """``value`` without terminal escape codes (colours, cursor moves)."""
    return _ESCAPES.sub("", value)


def _standing(secret: str) -> re.Pattern:
    """``secret`` where it is a word of its own: not next to a letter, digit, ``_`` or ``-``, nor to a
    dot that continues a word (``host.test.example``)."""
    return re.compile(r"(?<![\w.-])" + re.escape(secret) + r"(?![\w-])(?!\.\w)")


def text(value: str) -> str:
    """``value`` with every registered secret masked, URL credentials and terminal codes removed."""
    value = plain(value)
    for secret in sorted(_secrets, key=len, reverse=True):
        value = _standing(secret).sub(MASK, value)
    return _USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", value)


def data(value):
    """Redact every string inside JSON-like data."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {k: data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [data(v) for v in value]
    return value

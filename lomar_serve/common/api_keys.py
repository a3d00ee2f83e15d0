"""API keys of the data plane: what a key looks like, how it is kept, and the file the control plane publishes
for the gateways.

A key is `lmk_<id>_<secret>`: a public id of 12 hex digits (listed, revoked and rate-limited by it) and a secret of
256 random bits (43 url-safe characters), shown once when the key is created. Only the SHA-256 of the secret is
kept: a 256-bit random secret leaves nothing to brute-force, so no slow password hash is needed, and the check a
gateway makes per request stays in microseconds.

The lifecycle store is the source of truth (lomar_serve/jobs/store.py, table api_keys). The control plane publishes
the active keys (ids, digests, scopes, quotas; never a secret) to REPO/.api_keys.json in the shared model
repository, where every gateway already reads what to route; a gateway reloads the file when it changes, so a key
created or revoked takes effect on every gateway within `reload_s`, and a gateway keeps checking keys while the
store is down. Triton reads only folders of the repository; a top-level file is invisible to it.

    key_id, key, digest = new_key()                      # the control plane: `key` goes to the caller, once
    publish_grants(repo / API_KEYS_FILE, [KeyGrant(key_id, "ci", ("infer",), digest)])
    ring = KeyRing(repo / API_KEYS_FILE)                 # a gateway
    ring.grant_for("lmk_0123456789ab_...")               # -> KeyGrant (None: the key is unknown or revoked)
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

LOGGER = logging.getLogger(__name__)

Scope = Literal["infer", "collections:read", "collections:write"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
SCOPE_DESCRIPTIONS: dict[Scope, str] = {
    "infer": "classify, embed, reconstruct and list models",
    "collections:read": "list collections and images, search",
    "collections:write": "create and delete collections, add and remove images",
}
KEY_ID_PATTERN = r"^[0-9a-f]{12}$"
KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
_KEY = re.compile(r"lmk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True)
class KeyGrant:
    """What one active key allows: its scopes and optional quotas (None: no limit)."""

    id: str
    name: str
    scopes: tuple[str, ...]
    digest: str  # SHA-256 of the secret, hex
    rate_per_minute: int | None = None  # requests a gateway accepts per minute with this key
    max_collections: int | None = None  # collections this key may own (create) at once


def new_key() -> tuple[str, str, str]:
    """A fresh key: (id, the whole key for the caller, the digest to keep)."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    return key_id, f"lmk_{key_id}_{secret}", digest_of(secret)


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key; None for anything else."""
    match = _KEY.fullmatch(key.strip())
    return (match[1], match[2]) if match else None


def publish_grants(path: Path, grants: Iterable[KeyGrant]) -> bool:
    """Write the active keys to `path` atomically (a reader sees the old file or the new one, never half of one),
    readable by the owner and group only. Returns whether the content changed."""
    text = json.dumps({"keys": [asdict(grant) for grant in sorted(grants, key=lambda g: g.id)]}, indent=1)
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".api_keys.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.chmod(temporary, 0o640)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def read_grants(path: Path) -> dict[str, KeyGrant]:
    """The published keys by id. OSError or ValueError when the file is missing or malformed."""
    entries = json.loads(path.read_text())["keys"]
    return {entry["id"]: KeyGrant(**{**entry, "scopes": tuple(entry["scopes"])}) for entry in entries}


class KeyRing:
    """A gateway's view of the published keys: reloaded when the file changes, checked at most every `reload_s`.

    A missing file means no keys (every key is refused); an unreadable or malformed one keeps the keys last read
    (logged once per change), so a half-broken shared volume never opens the gateway nor locks every client out.
    """

    def __init__(self, path: Path, *, reload_s: float = 1.0) -> None:
        self.path = path
        self.reload_s = reload_s
        self._grants: dict[str, KeyGrant] = {}
        self._seen: tuple[int, int, int] | None = None  # (mtime_ns, size, inode) of the file last read
        self._checked = -float("inf")
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyRing({str(self.path)!r}, keys={len(self._grants)})"

    def grant_for(self, key: str) -> KeyGrant | None:
        """The grant of `key` if it is a published, unrevoked key (the secret compared in constant time)."""
        parts = split_key(key)
        if parts is None:
            return None
        grant = self._current().get(parts[0])
        if grant is None or not hmac.compare_digest(grant.digest, digest_of(parts[1])):
            return None
        return grant

    def _current(self) -> dict[str, KeyGrant]:
        now = time.monotonic()
        if now - self._checked < self.reload_s:
            return self._grants
        with self._lock:
            if now - self._checked >= self.reload_s:
                self._reload()
                self._checked = now
        return self._grants

    def _reload(self) -> None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            if self._seen is not None:
                LOGGER.warning("API keys file %s is gone: no API key is accepted until it is published again",
                               self.path)
            self._grants, self._seen = {}, None
            return
        except OSError as error:
            LOGGER.warning("API keys file %s unreadable (%s): keeping the %d keys read before", self.path, error,
                           len(self._grants))
            return
        seen = (info.st_mtime_ns, info.st_size, info.st_ino)
        if seen == self._seen:
            return
        try:
            self._grants = read_grants(self.path)
        except (OSError, ValueError, KeyError, TypeError) as error:
            LOGGER.warning("API keys file %s is malformed (%s): keeping the %d keys read before", self.path, error,
                           len(self._grants))
        else:
            LOGGER.info("API keys: %d active (%s)", len(self._grants), self.path)
        self._seen = seen

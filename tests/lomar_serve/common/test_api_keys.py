"""API keys (common/api_keys.py): their form, what is kept of them, the published file and a gateway's KeyRing
following it (keys added, revoked, the file broken or deleted)."""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from lomar_serve.common.api_keys import KeyGrant, KeyRing, digest_of, new_key, publish_grants, read_grants, split_key


def grant(scopes: tuple[str, ...] = ("infer",), **quotas: int) -> tuple[KeyGrant, str]:
    key_id, key, digest = new_key()
    return KeyGrant(key_id, "test", scopes, digest, **quotas), key


def test_a_key_is_an_id_and_a_256_bit_secret_and_only_its_digest_is_kept() -> None:
    key_id, key, digest = new_key()
    parts = split_key(key)
    assert parts is not None and parts[0] == key_id and len(parts[1]) == 43
    assert digest == digest_of(parts[1]) and parts[1] not in digest
    assert new_key()[1] != key
    for malformed in ("", "lmk_", key[:-1], key + "x", key.replace("lmk_", "lmx_"), f"lmk_{key_id.upper()}_{parts[1]}",
                      "not-needed"):
        assert split_key(malformed) is None, malformed


def test_the_published_file_holds_no_secret_and_is_written_atomically(tmp_path: Path) -> None:
    first, key = grant(rate_per_minute=5)
    path = tmp_path / ".api_keys.json"
    assert publish_grants(path, [first]) is True
    assert publish_grants(path, [first]) is False  # unchanged: not rewritten
    assert split_key(key)[1] not in path.read_text()  # type: ignore[index]
    assert read_grants(path) == {first.id: first}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert [entry.name for entry in tmp_path.iterdir()] == [".api_keys.json"]  # no temporary file left


def test_a_key_ring_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / ".api_keys.json"
    ring = KeyRing(path, reload_s=0.0)
    first, first_key = grant()
    second, second_key = grant(("collections:write",))
    assert ring.grant_for(first_key) is None  # no file: no key
    publish_grants(path, [first])
    assert ring.grant_for(first_key) == first and ring.grant_for(second_key) is None
    wrong_secret = first_key[:-1] + ("A" if first_key[-1] != "A" else "B")
    assert ring.grant_for(wrong_secret) is None  # the right id with another secret
    time.sleep(0.01)  # a new mtime
    publish_grants(path, [second])  # first revoked, second created
    assert ring.grant_for(first_key) is None and ring.grant_for(second_key) == second
    path.write_text("{not json")  # a broken file keeps the keys read before
    assert ring.grant_for(second_key) == second
    path.write_text(json.dumps({"keys": [{"id": "x"}]}))  # so does one of the wrong shape
    assert ring.grant_for(second_key) == second
    path.unlink()  # deleted: nothing is accepted any more
    assert ring.grant_for(second_key) is None


def test_a_key_ring_reads_the_file_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / ".api_keys.json"
    first, key = grant()
    publish_grants(path, [first])
    ring = KeyRing(path, reload_s=3600)
    assert ring.grant_for(key) == first
    path.unlink()
    assert ring.grant_for(key) == first  # not looked at again within the interval

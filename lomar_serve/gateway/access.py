"""Who may do what on a gateway: API keys (published by the control plane, lomar_serve/common/api_keys.py), the
scopes anyone may use without one, and per-key rate limits and quotas.

    access = Access.of(settings)
    grant = access.authorize("collections:write", "Bearer lmk_...", client="203.0.113.7")   # KeyGrant | None

The rules, in order:
- a well-formed key (`lmk_...`) that is unknown or revoked is refused (403), whatever the scope: a client with a
  wrong key learns it at once instead of being served as someone else;
- a valid key must hold the scope (403 otherwise) and stay under its `rate_per_minute` (429 with Retry-After);
  the collections it creates are its own, at most its `max_collections` (403 quota_exceeded, gateway/collections.py);
- without a key (or with a bearer value that is no key, as OpenAI clients send to open servers), only the scopes in
  `open_scopes` are allowed (401 for the others, saying how to get a key), under `anonymous_rate_per_minute` per
  client address when that is set.
Rates are counted per gateway process (limits' sliding window in memory); a fleet of N gateways behind a balancer
lets a key make up to N times its rate.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from contracts.model_repository import API_KEYS_FILE
from lomar_serve.common.api_keys import KeyGrant, KeyRing, Scope, split_key
from lomar_serve.common.errors import Forbidden, TooManyRequests, Unauthorized
from lomar_serve.gateway.settings import Settings

HOW_TO_GET_A_KEY = ("send 'Authorization: Bearer <API key>'; an administrator creates keys with `lomar keys create "
                    "NAME --scope SCOPE` on the control plane")


@lru_cache(maxsize=64)
def _per_minute(count: int) -> RateLimitItem:
    return RateLimitItemPerMinute(count)


@dataclass
class Access:
    keys: KeyRing
    open_scopes: frozenset[str]
    anonymous_rate_per_minute: int | None = None

    def __post_init__(self) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())

    @classmethod
    def of(cls, settings: Settings) -> Access:
        path = settings.api_keys_file or settings.model_repository / API_KEYS_FILE
        return cls(KeyRing(path, reload_s=settings.api_keys_reload_s), frozenset(settings.open_scopes),
                   settings.anonymous_rate_per_minute)

    def authorize(self, scope: Scope, authorization: str | None, *, client: str) -> KeyGrant | None:
        """The grant of the request's key (None: anonymous), if it may use `scope` now; else the 401/403/429."""
        credentials = _bearer(authorization)
        if credentials is not None and split_key(credentials) is not None:
            grant = self.keys.grant_for(credentials)
            if grant is None:
                raise Forbidden("the API key is not valid (unknown or revoked)")
            if scope not in grant.scopes:
                raise Forbidden(f"the API key {grant.id} ({grant.name}) does not have the scope {scope!r} "
                                f"(it has {', '.join(grant.scopes)})")
            self._limit("key", grant.id, grant.rate_per_minute, f"the API key {grant.id}")
            return grant
        if scope not in self.open_scopes:
            raise Unauthorized(f"{scope} needs an API key with that scope on this gateway: {HOW_TO_GET_A_KEY}")
        self._limit("client", client, self.anonymous_rate_per_minute, f"requests without an API key from {client}")
        return None

    def _limit(self, kind: str, identity: str, per_minute: int | None, who: str) -> None:
        if per_minute is None:
            return
        item = _per_minute(per_minute)
        if not self._limiter.hit(item, kind, identity):
            reset = self._limiter.get_window_stats(item, kind, identity).reset_time
            raise TooManyRequests(f"{who}: at most {per_minute} requests per minute",
                                  retry_after_s=math.ceil(reset - time.time()))


def _bearer(authorization: str | None) -> str | None:
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None

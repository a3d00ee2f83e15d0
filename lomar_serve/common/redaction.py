"""Secrets kept out of what the processes show: log lines, error bodies, access logs.

One rule for what a secret in a text is, used everywhere a connection string or a request's path is shown:

- the password of a URL's userinfo: `postgresql://user:PASSWORD@host/db`;
- the value of a query parameter or of a libpq keyword whose name says it holds a secret (`SENSITIVE_NAME`):
  `postgresql://host/db?password=...`, `host=db password='...'`, `/v1/collections?token=...`.

`mask_secrets` masks them wherever they occur in a text. `redact` also masks the literal secrets of a known
connection string: a driver's message may quote one where no pattern sees it (libpq: `invalid percent-encoded
token: "s3cr%ZZt"`). `mask_access_log` applies the rule to uvicorn's access log, which prints each request's path
with its query string (a client may send `?token=...`).
"""
from __future__ import annotations

import logging
import re
from urllib.parse import unquote

MASK = "********"
# A parameter name that holds a secret: password, passfile, sslpassword, token, access_token, api_key, key,
# client_secret, authorization... Masking a harmless one (`sslkey`, a file name) costs nothing.
SENSITIVE_NAME = re.compile(r"pass|token|key|secret|auth|credential|signature", re.IGNORECASE)
# scheme://user:PASSWORD@ (libpq ends the userinfo at "/" as well as at "@")
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/\s]*:)(?P<value>[^@/\s]*)(?=@)")
# name=VALUE in a query string (?a=1&password=VALUE): the value ends at "&", "#" or a space
_QUERY = re.compile(r"(?<=[?&])(?P<head>(?P<name>[A-Za-z_][\w.-]*)=)(?P<value>[^&#\s]*)")
# name=VALUE in a keyword DSN (host=db password='two words'): spaces around "=", the value quoted or up to a space
_KEYWORD = re.compile(r"(?<![^\s'\"(])(?P<head>(?P<name>[A-Za-z_][\w.-]*)\s*=\s*)"
                      r"(?P<value>'(?:[^'\\]|\\.)*'|\S+)")
_PATTERNS = (_USERINFO, _KEYWORD, _QUERY)


def mask_secrets(text: str) -> str:
    """`text` with every URL password and every value of a sensitive parameter replaced by MASK."""
    for pattern in _PATTERNS:
        text = pattern.sub(_mask, text)
    return text


def _sensitive(match: re.Match[str]) -> bool:
    names = match.groupdict()
    return bool(match["value"]) and ("name" not in names or bool(SENSITIVE_NAME.search(match["name"])))


def _mask(match: re.Match[str]) -> str:
    return match["head"] + MASK if _sensitive(match) else match[0]


def secret_values(connection: str) -> set[str]:
    """The secrets of a connection string as they may be quoted: raw, percent-decoded, unquoted ('a\\'b' -> a'b)."""
    found = {match["value"] for pattern in _PATTERNS for match in pattern.finditer(connection) if _sensitive(match)}
    values = set()
    for raw in found:
        value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if len(raw) > 1 and raw[0] == raw[-1] == "'" else raw
        values |= {raw, value, unquote(value)}
    return {value for value in values if value}


def redact(text: str, connection: str | None = None) -> str:
    """`text` (a driver's error message, say) with the secrets of `connection` and every secret mask_secrets
    recognises replaced by MASK."""
    if connection:
        for value in sorted(secret_values(connection), key=len, reverse=True):  # the longest first: no remnant
            text = text.replace(value, MASK)
    return mask_secrets(text)


ACCESS_LOGGER = "uvicorn.access"  # uvicorn's per-request line: client, method, path with query, status


class MaskSecretsFilter(logging.Filter):
    """Masks secrets in a record's arguments (uvicorn passes the path as one) or, without arguments, its text.

    The arguments, not the formatted line: uvicorn's AccessFormatter unpacks them (and the format string itself,
    masked, could lose a `%s`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(mask_secrets(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif not record.args and isinstance(record.msg, str):
            record.msg = mask_secrets(record.msg)
        return True


_ACCESS_FILTER = MaskSecretsFilter()


def mask_access_log() -> None:
    """Mask secrets in the access log's lines from now on (idempotent). Called by each app's factory: uvicorn's
    own logging configuration, before or after, keeps a logger's filters."""
    logging.getLogger(ACCESS_LOGGER).addFilter(_ACCESS_FILTER)

"""The one rule that keeps secrets out of logs and error bodies (lomar_serve/common/redaction.py): URL userinfo,
sensitive query parameters, libpq keyword strings, and a driver's message quoting a connection string."""
from __future__ import annotations

import logging

import pytest

from lomar_serve.common.redaction import MASK, MaskSecretsFilter, mask_secrets, redact, secret_values

SECRET = "S3cr3t-pw"


@pytest.mark.parametrize("text, shown", [
    (f"postgresql://lomar:{SECRET}@db:5432/lomar", "postgresql://lomar:********@db:5432/lomar"),
    (f"postgres://lomar:{SECRET}@db/lomar?sslmode=require", "postgres://lomar:********@db/lomar?sslmode=require"),
    (f"postgresql://lomar@db/lomar?sslmode=require&password={SECRET}&connect_timeout=2",
     "postgresql://lomar@db/lomar?sslmode=require&password=********&connect_timeout=2"),
    (f"postgresql://db/lomar?passfile=/run/{SECRET}&sslpassword={SECRET}",
     "postgresql://db/lomar?passfile=********&sslpassword=********"),
    (f"host=db port=5432 password={SECRET} dbname=lomar", "host=db port=5432 password=******** dbname=lomar"),
    (f"password = '{SECRET} with \\' a quote' host=db", "password = ******** host=db"),
    (f"host=db passfile=/run/{SECRET}", "host=db passfile=********"),
    (f'GET /v1/collections?token={SECRET}&limit=3 HTTP/1.1" 200',
     'GET /v1/collections?token=********&limit=3 HTTP/1.1" 200'),
    (f"/x?api_key={SECRET}&key={SECRET}&access_token={SECRET}&offset=4",
     "/x?api_key=********&key=********&access_token=********&offset=4"),
], ids=["userinfo", "userinfo-and-query", "query-password", "query-passfile", "keyword", "keyword-quoted",
        "keyword-passfile", "access-log-token", "access-log-keys"])
def test_every_form_of_a_secret_is_masked(text: str, shown: str) -> None:
    assert mask_secrets(text) == shown


@pytest.mark.parametrize("text", [
    "/srv/jobs/lifecycle.sqlite", "postgresql://lomar@db/lomar?sslmode=require", "host=db dbname=lomar user=lomar",
    "http://triton:8000/v2/models/x", "GET /v1/collections/p/images?offset=3&limit=10 HTTP/1.1"])
def test_what_holds_no_secret_is_unchanged(text: str) -> None:
    assert mask_secrets(text) == text


def test_a_drivers_message_quoting_a_secret_is_redacted() -> None:
    """libpq quotes a malformed token as it was written, where no name=value pattern sees it."""
    url = "postgresql://lomar:s3cr%ZZt@db/lomar"
    assert redact('invalid percent-encoded token: "s3cr%ZZt"', url) == f'invalid percent-encoded token: "{MASK}"'
    keyword = "host=db password='it\\'s s3cret'"
    assert secret_values(keyword) >= {"it's s3cret", "'it\\'s s3cret'"}
    assert "s3cret" not in redact("the password it's s3cret was refused", keyword)
    assert redact("nothing to hide", None) == "nothing to hide"


def test_the_access_log_filter_keeps_uvicorns_format() -> None:
    """uvicorn's AccessFormatter unpacks the record's arguments: the filter masks them in place."""
    from uvicorn.logging import AccessFormatter

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", f"/v1/models?token={SECRET}&x=1", "1.1", 200), None)
    assert MaskSecretsFilter().filter(record)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(record)
    assert line == '127.0.0.1:5 - "GET /v1/models?token=********&x=1 HTTP/1.1" 200 OK'

"""The web pages and their shared assets are served from the package, and only the listed files are."""
from __future__ import annotations

import re


def test_pages_link_the_shared_assets(client):
    for path in ("/", "/search"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<link rel="stylesheet" href="/static/common.css">' in page.text
        assert '<script src="/static/common.js"></script>' in page.text
    script = client.get("/static/common.js")
    assert script.status_code == 200 and "function showError" in script.text
    assert client.get("/static/common.css").headers["content-type"].startswith("text/css")


def test_both_pages_have_the_same_header(client):
    headers = [re.search(r"<header>.*?</header>", client.get(path).text, re.S).group(0) for path in ("/", "/search")]
    assert headers[0] == headers[1] and 'href="/search"' in headers[0] and 'id="status"' in headers[0]
    for path in ("/", "/search"):  # the readiness line and the API key field of both
        assert '<script src="/static/header.js"></script>' in client.get(path).text
    header = client.get("/static/header.js").text
    assert "function checkStatus" in header and "function gatewayFetch" in header and "sessionStorage" in header


def test_only_listed_assets_are_served(client):
    for name in ("index.html", "..%2F..%2Fapp.py", "nope.js"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"

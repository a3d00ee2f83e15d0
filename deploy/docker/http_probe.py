#!/usr/bin/env python3
"""Container health check: exit 0 when an HTTP GET answers 2xx within the timeout, 1 otherwise.

    http-probe /readyz                              # http://127.0.0.1:$LOMAR_PORT/readyz (the gateway)
    http-probe http://127.0.0.1:8100/healthz        # any URL (the control plane, Triton's /v2/health/ready)

Standard library only: it runs in the images' system Python, with nothing of the project imported.
"""
from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0  # below the HEALTHCHECK --timeout (5 s), so the probe reports instead of being killed


def probe_url(target: str) -> str:
    """A path is taken on the local gateway's port (LOMAR_PORT, default 8000); a URL is used as it is."""
    if target.startswith("/"):
        return f"http://127.0.0.1:{os.environ.get('LOMAR_PORT', '8000')}{target}"
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: http-probe PATH|URL", file=sys.stderr)
        return 2
    url = probe_url(argv[0])
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"http-probe: {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The bounds of the paging parameters every API shares (`offset`, `limit`), so an out-of-range one is a 422 that
the OpenAPI documents state, never a 500 from a file seek or a 503 from a database refusing a 64-bit overflow."""
from __future__ import annotations

MAX_OFFSET = 2**63 - 1  # a signed 64-bit integer: a file offset (off_t), SQLite's and PostgreSQL's OFFSET
MAX_PAGE = 1000  # the most items one listing returns (`limit`)

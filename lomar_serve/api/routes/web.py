"""GET /: the single-page web client; GET /search: the similar-image view (no external assets)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter(tags=["web"])
WEB = Path(__file__).resolve().parent.parent.parent / "web"
PAGE = WEB / "index.html"
SEARCH_FILES = {"search.html": "text/html; charset=utf-8", "search.js": "text/javascript; charset=utf-8"}


@lru_cache(maxsize=1)
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(_page())


@lru_cache(maxsize=len(SEARCH_FILES))
def _search_file(name: str) -> str:
    return (WEB / name).read_text(encoding="utf-8")


@router.get("/search", response_class=HTMLResponse, include_in_schema=False)
async def search_page() -> Response:
    return Response(_search_file("search.html"), media_type=SEARCH_FILES["search.html"])


@router.get("/search.js", include_in_schema=False)
async def search_script() -> Response:
    return Response(_search_file("search.js"), media_type=SEARCH_FILES["search.js"])

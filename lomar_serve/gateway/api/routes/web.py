"""GET /: the single-page web client; GET /search: the similar-image view; GET /static/NAME: their shared
stylesheet and scripts (no external assets)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from lomar_serve.gateway.errors import FileNotFound

router = APIRouter(tags=["web"])
WEB = Path(__file__).resolve().parent.parent.parent / "web"
PAGES = {"/": "index.html", "/search": "search.html"}
STATIC = {"common.css": "text/css; charset=utf-8", "common.js": "text/javascript; charset=utf-8",
          "search.js": "text/javascript; charset=utf-8"}


@lru_cache(maxsize=len(PAGES) + len(STATIC))
def _read(name: str) -> str:
    return (WEB / name).read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(_read(PAGES["/"]))


@router.get("/search", response_class=HTMLResponse, include_in_schema=False)
async def search_page() -> HTMLResponse:
    return HTMLResponse(_read(PAGES["/search"]))


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> Response:
    """Only the files listed in STATIC: a name is never turned into another path."""
    if name not in STATIC:
        raise FileNotFound(f"no static file {name!r}")
    return Response(_read(name), media_type=STATIC[name], headers={"Cache-Control": "public, max-age=300"})

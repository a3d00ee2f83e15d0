"""GET /: the single-page web client; GET /search: the similar-image view; GET /static/NAME: their scripts and
the stylesheet and helpers they share with the control plane's console (lomar_serve/common/web_assets.py; no
external assets)."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from lomar_serve.common.web_assets import SHARED, WebAssets

WEB = Path(__file__).resolve().parent.parent.parent / "web"
ASSETS = WebAssets({**SHARED, **{name: WEB / name for name in ("index.html", "search.html", "search.js", "header.js")}})
router = APIRouter(tags=["web"])


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return ASSETS.page("index.html")


@router.get("/search", response_class=HTMLResponse, include_in_schema=False)
async def search_page() -> HTMLResponse:
    return ASSETS.page("search.html")


router.include_router(ASSETS.router())

"""The files of a process's web pages, served from a fixed list: the gateway's pages and the control plane's console
share `common.css` and `common.js` (lomar_serve/common/web/), and each adds its own pages and scripts.

    assets = WebAssets({**SHARED, "search.js": WEB / "search.js"})
    app.include_router(assets.router())            # GET /static/{name}: only the listed names
    assets.page("index.html")                      # an HTMLResponse

A URL names an entry of the list and is never joined to a path, so nothing else on disk can be served. Files are
read once, on first use, and kept (they ship with the package).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from lomar_serve.common.errors import NotFound

WEB_DIR = Path(__file__).resolve().parent / "web"
SHARED = {"common.css": WEB_DIR / "common.css", "common.js": WEB_DIR / "common.js"}
MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".html": "text/html; charset=utf-8"}
STATIC_PREFIX = "/static"


class WebAssets:
    """Named files of web pages; `headers` go with every page and static file (a console's security policy)."""

    def __init__(self, files: Mapping[str, Path], headers: Mapping[str, str] | None = None) -> None:
        unknown = sorted(name for name, path in files.items() if path.suffix not in MEDIA_TYPES)
        if unknown:
            raise ValueError(f"no media type for {', '.join(unknown)}")
        self._files = dict(files)
        self._headers = dict(headers or {})
        self._texts: dict[str, str] = {}

    def text(self, name: str) -> str:
        """The file listed as `name`; NotFound for any other name."""
        if name not in self._files:
            raise NotFound(f"no static file {name!r}")
        if name not in self._texts:
            self._texts[name] = self._files[name].read_text(encoding="utf-8")
        return self._texts[name]

    def page(self, name: str, status_code: int = 200) -> HTMLResponse:
        return HTMLResponse(self.text(name), status_code=status_code,
                            headers={"Cache-Control": "no-cache", **self._headers})

    def static(self, name: str) -> Response:
        """A listed file, typed by its suffix; pages are only served as pages."""
        if name.endswith(".html"):
            raise NotFound(f"no static file {name!r}")
        return Response(self.text(name), media_type=MEDIA_TYPES[self._files[name].suffix],
                        headers={"Cache-Control": "public, max-age=300", **self._headers})

    def router(self) -> APIRouter:
        """GET /static/{name} for the listed scripts and stylesheets."""
        router = APIRouter(tags=["web"])

        @router.get(STATIC_PREFIX + "/{name}", include_in_schema=False)
        async def static_file(name: str) -> Response:
            return self.static(name)

        return router

"""The console: the control plane's web page at / (models and their versions, deploys and rollbacks, jobs with live
training curves, evaluation reports and comparisons, API keys), and the one admin route it needs beyond the admin
API (`GET /v1/admin/job-form`: what a job form offers).

The page is static; its scripts call the admin API with the admin token as a bearer header. The token is typed into
a login form and kept in the tab's sessionStorage: never in a URL (the form posts, and has no named field to post)
nor a cookie, so no request from another site carries it. The page and its files are sent with a content security
policy that allows this origin's scripts and styles only (no inline script, no CDN, no frame).
"""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, RedirectResponse

from lomar_serve.common.openapi import error_responses
from lomar_serve.common.web_assets import SHARED, WebAssets
from lomar_serve.control_plane.routes import LifecycleDep, require_admin
from lomar_serve.control_plane.schemas import JobForm
from lomar_serve.jobs.job_form import job_form

WEB = Path(__file__).resolve().parent / "web"
FILES = ("console.html", "console.css", "console.js", "chart.js", "models.js", "jobs.js", "job.js", "report.js",
         "keys.js")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
ASSETS = WebAssets({**SHARED, **{name: WEB / name for name in FILES}}, headers=SECURITY_HEADERS)

router = APIRouter(tags=["console"])


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def console() -> HTMLResponse:
    return ASSETS.page("console.html")


@router.post("/", include_in_schema=False)
async def login_without_script() -> RedirectResponse:
    """The login form posted by a browser that did not run the page's script: back to the page (the body, which
    holds nothing, is never read)."""
    return RedirectResponse("/", status_code=303)


router.include_router(ASSETS.router())

admin = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                  responses=error_responses(401, 403, 503))


@admin.get("/job-form", summary="What a job request may name: data sets under the data roots, architectures, "
           "training settings with their defaults and help")
def job_form_fields(lifecycle: LifecycleDep) -> JobForm:
    return JobForm.model_validate(job_form(lifecycle.roots))


router.include_router(admin)

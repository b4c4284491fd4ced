"""The search page: static files served by the app itself, open to all (the page asks for the key).

No build step and no CDN: ``static/`` holds the HTML, CSS and JS as they are served. The page uses
relative URLs, so it works at ``/`` and under any ``IMAGE_SEARCH_API_PREFIX`` or API Gateway stage.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).parents[1] / "static"
# Served by name from this table only, so no request path ever reaches the file system.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "duplicates.js": "text/javascript; charset=utf-8",
    "combine.js": "text/javascript; charset=utf-8",
    "filters.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# Thumbnails are presigned S3 URLs on another origin; everything else comes from this one.
CSP = (
    "default-src 'self'; img-src 'self' http: https: blob: data:; script-src 'self'; "
    "style-src 'self'; connect-src 'self'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
router = APIRouter(include_in_schema=False)  # open: the page itself asks for the key

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> FileResponse:
    if name not in FILES:
        raise HTTPException(status_code=404, detail="Not Found")
    return FileResponse(STATIC / name, media_type=FILES[name], headers=HEADERS)


@router.get("/")
def page() -> FileResponse:
    """The search page."""
    return _file("index.html")


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    """The page's script and style sheet."""
    return _file(name)

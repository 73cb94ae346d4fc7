"""The demo page (`/`), the monitor page (`/monitor`) and their static files (issue 7).

Plain files from service/static/: hand-written HTML, CSS and ES modules, nothing fetched
from elsewhere, so the pages work offline and under a `script-src 'self'` policy.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def demo_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html")


@router.get("/monitor")
def monitor_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "monitor.html")


def install_pages(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

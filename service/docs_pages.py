"""/docs (Swagger UI) served from local files, so it works offline.

FastAPI's own page loads Swagger UI from a CDN: on a machine without internet (a demo
room, an air-gapped site) "API docs" was a blank page, while the demo page it is linked
from worked. fastapi-offline ships the same assets as package data; FastAPI's page
builder is pointed at them. There is no /redoc: ReDoc always fetches its branding image
from its own CDN, and /docs already documents every operation.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs-assets"


def install_docs_pages(app: FastAPI) -> None:
    """The /docs route; the app must be built with ``docs_url=None, redoc_url=None``."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    assert app.openapi_url is not None
    openapi_url = app.openapi_url

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API docs",
            oauth2_redirect_url=None,
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters,
        )

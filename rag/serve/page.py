"""The web page: ``GET /`` and its two assets, plain files shipped in ``rag/serve/web/``.

No build step and no external URLs: the page talks to this service only (the Content-Security-
Policy says so to the browser too). The assets are whitelisted by name, so nothing else in the
package folder is ever served.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.config.app import AppConfig
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

WEB_DIR = Path(__file__).parent / "web"

ASSETS = {
    "app.js": "text/javascript",
    "style.css": "text/css",
}

# Everything from this origin only; `data:` images for the empty favicon.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


@get("/", include_in_schema=False, sync_to_thread=False)
def page() -> Response[bytes]:
    """The question page (``/?q=...`` asks that question on load)."""
    return Response((WEB_DIR / "index.html").read_bytes(), media_type="text/html",
                    headers=PAGE_HEADERS)


@get("/static/{name:str}", include_in_schema=False, sync_to_thread=False)
def asset(name: FromPath[str]) -> Response[bytes]:
    if name not in ASSETS:
        raise NotFoundException(f"no such file: /static/{name}")
    return Response((WEB_DIR / name).read_bytes(), media_type=ASSETS[name],
                    headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


def add_web_page(app_config: AppConfig) -> AppConfig:
    """An ``on_app_init`` hook: adds the page's routes to the app (GET only, so the JSON-only
    rule for POST bodies does not concern them)."""
    app_config.route_handlers.extend([page, asset])
    return app_config

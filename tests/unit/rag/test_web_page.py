"""The web page's routes, without models: the app is built with loading switched off."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from rag.serve import app as http_app
from rag.serve.page import ASSETS, WEB_DIR
from rag.serve.service import Service
from rag.settings import PROJECT_ROOT, Settings


@pytest.fixture()
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[TestClient]:
    monkeypatch.setattr(Service, "load", lambda self: None)  # stays "loading"
    app = http_app.create_app(Settings.from_env({}, index_dir=tmp_path / "index"))
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        yield client


def test_the_page_and_its_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/app.js"' in page.text
    assert '<link rel="stylesheet" href="/static/style.css">' in page.text
    assert client.get("/?q=Who%20is%20Taro%20Kono%3F").status_code == 200
    for name, media_type in ASSETS.items():
        response = client.get(f"/static/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(media_type)
        assert response.text == (WEB_DIR / name).read_text(encoding="utf-8")


def test_only_the_listed_assets_are_served(client: TestClient) -> None:
    for path in ("/static/index.html", "/static/nothing.js", "/static/..%2Fweb_page.py"):
        response = client.get(path)
        assert response.status_code == 404
        assert "error" in response.json()


def test_the_page_works_while_the_service_loads(client: TestClient) -> None:
    assert client.get("/").status_code == 200
    assert client.get("/readyz").status_code == 503
    response = client.post("/v1/ask", json={"question": "Who?"})
    assert response.status_code == 503 and response.headers["retry-after"]


def test_the_page_stays_out_of_the_api_schema(client: TestClient) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert "/v1/ask" in paths
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_the_page_names_no_external_url() -> None:
    """Works offline: nothing is fetched from anywhere but the service itself."""
    for path in WEB_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), path.name
        assert "@import" not in text, path.name


def test_the_page_files_are_package_data() -> None:
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8")
    patterns = re.search(r'^"rag.serve" = \[(.*)\]$', pyproject, re.MULTILINE)
    assert patterns, "the page's files are not declared as package data in pyproject.toml"
    declared = {p.strip().strip('"').removeprefix("web/*") for p in patterns.group(1).split(",")}
    assert {path.suffix for path in WEB_DIR.iterdir()} <= declared

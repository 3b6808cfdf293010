"""Who may ask and what they learn, without a model: allowed hosts (DNS rebinding), foreign web
pages, key scopes, error bodies without server paths."""

from pathlib import Path

import pytest
from litestar.testing import TestClient

from rag.errors import ForbiddenError, IndexNotFoundError, UnauthorizedError
from rag.serve import app as http_app
from rag.serve import auth
from rag.serve.errors import error_body, without_server_paths
from rag.serve.service import Service
from rag.settings import Settings

HOSTS = auth.allowed_hosts(Settings(allowed_hosts="rag.example, Docs.Example"))


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "LOCALHOST:80", "[::1]:8000",
                                  "rag.example:8443", "docs.example"])
def test_loopback_the_bind_address_and_configured_hosts_are_served(host: str) -> None:
    auth.check_host("/v1/ask", host, HOSTS)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                                  "localhost.evil.example:8000", "[::2]:8000", "", None])
def test_any_other_host_is_refused_but_by_the_probes(host: str | None) -> None:
    with pytest.raises(ForbiddenError, match="RAG_ALLOWED_HOSTS"):
        auth.check_host("/v1/documents", host, HOSTS)
    auth.check_host("/healthz", host, HOSTS)
    auth.check_host("/v1/ask", host, auth.allowed_hosts(Settings(allowed_hosts="*")))


def test_the_bind_address_is_served_as_named() -> None:
    assert "10.0.0.5" in auth.allowed_hosts(Settings(host="10.0.0.5"))
    assert "[fd00::1]" in auth.allowed_hosts(Settings(host="fd00::1"))


def test_a_foreign_page_may_not_post_or_delete_whatever_its_key() -> None:
    own, cors = "127.0.0.1:8000", frozenset({"http://allowed.test"})
    for method in ("POST", "DELETE"):
        with pytest.raises(ForbiddenError, match="RAG_CORS_ORIGINS"):
            auth.check_origin(method, own, "http://evil.example", cors)
        with pytest.raises(ForbiddenError):  # same host name, another port: another origin
            auth.check_origin(method, own, "http://127.0.0.1:9000", cors)
        auth.check_origin(method, own, "http://127.0.0.1:8000", cors)  # the service's own page
        auth.check_origin(method, own, "http://allowed.test", cors)
        auth.check_origin(method, own, None, cors)  # not a browser: curl, the OpenAI client
    auth.check_origin("GET", own, "http://evil.example", cors)


def test_a_key_is_needed_beyond_the_open_paths() -> None:
    keys = auth.Keys(ask=frozenset({"alpha"}))
    auth.check("/v1/ask", "Bearer alpha", keys)
    auth.check("/healthz", None, keys)
    with pytest.raises(UnauthorizedError):
        auth.check("/v1/ask", "Bearer beta", keys)


def test_a_read_key_asks_and_only_an_admin_key_changes_the_documents() -> None:
    keys = auth.load_keys(Settings(api_keys="reader", admin_keys="boss, deputy"))
    assert keys == auth.Keys(ask=frozenset({"reader"}), admin=frozenset({"boss", "deputy"}))
    for key in ("reader", "boss", "deputy"):
        auth.check("/v1/ask", f"Bearer {key}", keys)
    auth.check("/v1/documents", "Bearer deputy", keys, admin=True)
    with pytest.raises(ForbiddenError, match="RAG_ADMIN_KEYS"):
        auth.check("/v1/documents", "Bearer reader", keys, admin=True)
    with pytest.raises(UnauthorizedError):
        auth.check("/v1/documents", "Bearer intruder", keys, admin=True)
    with pytest.raises(ForbiddenError):  # read keys only: nobody changes the documents by key
        auth.check("/v1/index/reload", "Bearer reader",
                   auth.load_keys(Settings(api_keys="reader")), admin=True)


def _client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: str) -> TestClient:
    monkeypatch.setattr(Service, "load", lambda self: None)  # stays "loading": no model
    app = http_app.create_app(Settings.from_env(
        {"RAG_CORS_ORIGINS": "http://allowed.test", **settings}, index_dir=tmp_path / "index"))
    return TestClient(app, base_url="http://127.0.0.1:8000")


def _status(client: TestClient, method: str, path: str, **headers: str) -> int:
    with client:
        return client.request(method, path, headers=headers).status_code


# Past the guard, a request meets the service still loading: 503.
@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/index/reload"),
                                              ("DELETE", "/v1/documents/a.txt")])
def test_the_routes_that_change_the_documents_are_guarded_by_scope(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, path: str) -> None:
    open_service = _client(tmp_path, monkeypatch)
    assert _status(open_service, method, path, Origin="http://allowed.test") == 403
    assert _status(open_service, method, path, Origin="http://127.0.0.1:8000") == 503
    assert _status(open_service, method, path) == 503  # not a browser
    keyed = _client(tmp_path, monkeypatch, RAG_API_KEYS="reader", RAG_ADMIN_KEYS="boss")
    assert _status(keyed, method, path, Authorization="Bearer reader") == 403
    assert _status(keyed, method, path, Authorization="Bearer boss",
                   Origin="http://allowed.test") == 503
    assert _status(keyed, "GET", "/v1/index", Authorization="Bearer reader") == 503


def test_error_bodies_show_no_server_paths(tmp_path: Path) -> None:
    index = tmp_path / "deep" / "index"
    status, body = error_body(IndexNotFoundError(f"no index at {index}: build one"))
    assert status == 503 and body["error"]["message"] == "no index at …/index: build one"
    assert str(tmp_path) not in without_server_paths(f"'{index}/documents/a.pdf' is gone")
    for kept in ("send it to /v1/documents", "see http://127.0.0.1:8000/v1/ask", "a/b and c"):
        assert without_server_paths(kept) == kept

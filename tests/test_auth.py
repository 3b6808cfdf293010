"""Who may ask, without a server: allowed hosts (DNS rebinding), foreign web pages, API keys."""

import pytest

from rag.errors import ForbiddenError, UnauthorizedError
from rag.serve import auth
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
    keys = frozenset({"alpha"})
    auth.check("/v1/ask", "Bearer alpha", keys)
    auth.check("/healthz", None, keys)
    with pytest.raises(UnauthorizedError):
        auth.check("/v1/ask", "Bearer beta", keys)

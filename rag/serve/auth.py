"""Who may ask: the host asked for, the web page asking, the API key.

Every request must name an allowed host (``allowed_hosts``), so a DNS name that an attacker's
page rebinds to 127.0.0.1 reaches nothing; a POST or DELETE sent by a browser from another
origin (its ``Origin`` header) is refused unless that origin is one of ``RAG_CORS_ORIGINS``, with
or without keys: any page the user visits can send a form to a local service, but only the
service's own page (and configured origins) may change or ask it anything. Clients that are not
browsers send no ``Origin``.

With ``RAG_API_KEYS`` (comma-separated) and/or ``RAG_API_KEYS_FILE`` (one key a line, ``#``
comments) set, every route but health, readiness and the web page itself requires
``Authorization: Bearer <key>`` (what the OpenAI client sends as its ``api_key``). Those keys may
ask; the routes that change what the service answers from (upload, delete, reload: handlers
marked ``opt=ADMIN``) take only a key of ``RAG_ADMIN_KEYS``, which may also ask. With no key set,
those routes take no browser request but from the service's own page (not even a CORS origin).
Keys are compared in constant time, against every configured key, so timing tells nothing about
them.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from rag.errors import ForbiddenError, SettingsError, UnauthorizedError
from rag.settings import Settings

# Reachable without a key: probes, and the page and assets (the page asks for the key itself).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/", "/static/app.js", "/static/style.css"})
# Probes answer whatever host an orchestrator addresses them by.
PROBES = frozenset({"/healthz", "/readyz"})
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A route handler's ``opt`` that reserves it to admin keys.
ADMIN = {"admin": True}


@dataclass(frozen=True)
class Keys:
    """The bearer keys: ``ask`` keys may ask, ``admin`` keys may also change the documents."""

    ask: frozenset[str] = frozenset()
    admin: frozenset[str] = frozenset()

    @property
    def required(self) -> bool:
        return bool(self.ask or self.admin)


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The host names requests may name: the bind address, loopback, ``RAG_ALLOWED_HOSTS``."""
    bind = f"[{settings.host}]" if ":" in settings.host else settings.host
    extra = {h.strip().lower() for h in settings.allowed_hosts.split(",") if h.strip()}
    return frozenset({bind.lower(), *LOOPBACK_HOSTS, *extra})


def check_host(path: str, host: str | None, allowed: frozenset[str]) -> None:
    """Raise ForbiddenError unless ``host`` (the Host header) names an allowed host."""
    if path in PROBES or "*" in allowed:
        return
    if _hostname(host or "") not in allowed:
        raise ForbiddenError(f"this service does not answer to the host {host!r}: add it to "
                             "RAG_ALLOWED_HOSTS to reach the service under that name")


def check_origin(method: str, host: str | None, origin: str | None,
                 cors_origins: frozenset[str]) -> None:
    """Raise ForbiddenError for a POST or DELETE a browser sends from another origin than the
    service's own page (``host``) or a configured CORS origin."""
    if method not in UNSAFE_METHODS or origin is None or origin in cors_origins:
        return
    if urlsplit(origin).netloc.lower() != (host or "").lower():
        raise ForbiddenError(f"a web page of {origin!r} may not send requests to this service; "
                             "allow its origin with RAG_CORS_ORIGINS")


def _hostname(host: str) -> str:
    """The name of a Host header without its port ("[::1]:8000" -> "[::1]")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def load_keys(settings: Settings) -> Keys:
    ask = _listed(settings.api_keys.split(","))
    if settings.api_keys_file is not None:
        try:
            lines = settings.api_keys_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SettingsError(
                f"RAG_API_KEYS_FILE={settings.api_keys_file} cannot be read: "
                f"{exc.strerror or exc}"
            ) from None
        ask |= _listed(line for line in lines if not line.startswith("#"))
    return Keys(ask=ask, admin=_listed(settings.admin_keys.split(",")))


def _listed(keys: Iterable[str]) -> frozenset[str]:
    return frozenset(k.strip() for k in keys if k.strip())


def check(path: str, authorization: str | None, keys: Keys, admin: bool = False) -> None:
    """Raise UnauthorizedError unless the path is open or the bearer key is one of ``keys``;
    ForbiddenError when an ``admin`` route is sent a key that may only ask."""
    if not keys.required or path in OPEN_PATHS:
        return
    scheme, _, candidate = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not candidate.strip():
        raise UnauthorizedError("this service requires an API key: send "
                                "'Authorization: Bearer <key>'")
    if _matches(candidate.strip(), keys.admin):
        return
    if not _matches(candidate.strip(), keys.ask):
        raise UnauthorizedError("the API key is not valid")
    if admin:
        raise ForbiddenError("this key may ask but not upload, delete or reload: use a key of "
                             "RAG_ADMIN_KEYS")


def _matches(candidate: str, keys: frozenset[str]) -> bool:
    match = False
    for key in keys:  # no early exit: the time taken does not depend on which key matched
        match |= hmac.compare_digest(candidate.encode(), key.encode())
    return match

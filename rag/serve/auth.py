"""API keys: who may ask.

With ``RAG_API_KEYS`` (comma-separated) and/or ``RAG_API_KEYS_FILE`` (one key a line, ``#``
comments) set, every route but health, readiness and the web page itself requires
``Authorization: Bearer <key>`` (what the OpenAI client sends as its ``api_key``). Keys are
compared in constant time, against every configured key, so timing tells nothing about them.
"""

from __future__ import annotations

import hmac

from rag.errors import SettingsError, UnauthorizedError
from rag.settings import Settings

# Reachable without a key: probes, and the page and assets (the page asks for the key itself).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/", "/static/app.js", "/static/style.css"})


def load_keys(settings: Settings) -> frozenset[str]:
    keys = {k.strip() for k in settings.api_keys.split(",") if k.strip()}
    if settings.api_keys_file is not None:
        try:
            lines = settings.api_keys_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SettingsError(
                f"RAG_API_KEYS_FILE={settings.api_keys_file} cannot be read: "
                f"{exc.strerror or exc}"
            ) from None
        keys |= {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    return frozenset(keys)


def check(path: str, authorization: str | None, keys: frozenset[str]) -> None:
    """Raise UnauthorizedError unless the path is open or the bearer key is one of ``keys``."""
    if not keys or path in OPEN_PATHS:
        return
    scheme, _, candidate = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not candidate.strip():
        raise UnauthorizedError("this service requires an API key: send "
                                "'Authorization: Bearer <key>'")
    match = False
    for key in keys:  # no early exit: the time taken does not depend on which key matched
        match |= hmac.compare_digest(candidate.strip().encode(), key.encode())
    if not match:
        raise UnauthorizedError("the API key is not valid")

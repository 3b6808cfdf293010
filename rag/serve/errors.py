"""Every HTTP error status in one table; one handler turns any exception into a JSON body.

``{"error": {"message": "…", "type": "…"}}``: the message is written for the person calling
(what went wrong, what to do); unexpected exceptions become a 500 without a traceback (the
service log has it).
"""

from __future__ import annotations

import errno
import logging
import re
from pathlib import Path
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from rag import errors

log = logging.getLogger("rag.http")
RETRY_AFTER_S = 2


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    message: str
    type: str
    details: Any = None  # what failed to validate, for malformed bodies


class ErrorBody(msgspec.Struct):
    """Every error response: ``{"error": {"message": "…", "type": "…"}}``."""

    error: ErrorDetail


_DESCRIBED = {
    400: "bad input: empty, too long or malformed question, bad top_k or min_confidence, "
         "malformed JSON, or a prompt that does not fit the context",
    401: "an API key is required and none, or a wrong one, was sent",
    403: "a Host header the service does not answer to (RAG_ALLOWED_HOSTS), or a POST or "
         "DELETE from a web page of another origin (RAG_CORS_ORIGINS)",
    404: "no such route, document or upload job",
    409: "a reload whose new index did not load (the old one keeps serving)",
    413: "the request body is too large, or an uploaded file is (details name it)",
    415: "the body is not application/json (multipart/form-data for uploads), or an uploaded "
         "file is of no supported type whatever its name says (details name it)",
    422: "uploaded files that cannot be indexed: empty, encrypted, corrupt, without text, "
         "beyond the page, character or document limits (details name each file and why)",
    500: "an unexpected error or a server misconfiguration (see the service log)",
    503: "loading, failed to load, or too many requests or uploads waiting (with Retry-After)",
    504: "the request timed out (RAG_REQUEST_TIMEOUT_S)",
    507: "the disk refused to store an upload or its index (full, read-only): nothing changed",
}
# The error responses every route documents in the OpenAPI schema.
ERROR_RESPONSES = {
    status: ResponseSpec(data_container=ErrorBody, description=text, generate_examples=False)
    for status, text in _DESCRIBED.items()
}

# First match wins: subclasses before their bases.
ERROR_STATUS: dict[type[Exception], int] = {
    errors.SettingsError: 500,  # the server is misconfigured, not the request
    errors.DocumentTooLargeError: 413,
    errors.UnsupportedDocumentError: 415,
    errors.DocumentRejectedError: 422,
    errors.UnknownDocumentError: 404,
    errors.UnknownJobError: 404,
    errors.InputError: 400,
    RecursionError: 400,  # a JSON body nested too deeply to decode
    errors.UnauthorizedError: 401,
    errors.ForbiddenError: 403,
    errors.ReloadFailedError: 409,
    errors.NotReadyError: 503,
    errors.ServiceBusyError: 503,
    errors.IndexNotFoundError: 503,
    errors.IndexMismatchError: 503,
    errors.ModelNotFoundError: 503,
    errors.ModelIntegrityError: 503,
    errors.LlamaRuntimeError: 503,
    errors.DeadlineExceededError: 504,
    errors.StorageError: 507,
    errors.CancelledError: 499,  # the client went away; nobody reads this status
}
# Where the exception's own words would not help the caller: (message, type).
_PLAIN: dict[type[Exception], tuple[str, str]] = {
    RecursionError: ("the JSON body is nested too deeply", "invalid_request"),
}
# A write the disk refused outside the project's own code is the same 507.
_DISK_REFUSED = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}
_HTTP_MESSAGES = {
    413: "the request body is too large (settings RAG_MAX_BODY_BYTES for questions, "
         "RAG_MAX_UPLOAD_BYTES for uploads)",
}


# An absolute path in a message: the caller learns its last name only, not the server's layout.
_PATH = re.compile(r"(?<![\w./:])/([\w.\-+@~]+)(?:/[\w.\-+@~]+)*")


def without_server_paths(message: str) -> str:
    """``message`` with each absolute path of this machine (its first folder exists here; a
    route such as /v1/ask does not) cut to "…/" and its last name."""
    def cut(match: re.Match[str]) -> str:
        path = match.group(0)
        return f"…/{path.rsplit('/', 1)[1]}" if Path("/", match.group(1)).exists() else path
    return _PATH.sub(cut, message)


def error_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    status, body = _error_body(exc)
    body["error"]["message"] = without_server_paths(body["error"]["message"])
    for detail in body["error"].get("details") or []:
        if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
            detail["reason"] = without_server_paths(detail["reason"])
    return status, body


def _error_body(exc: Exception) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, OSError) and exc.errno in _DISK_REFUSED:
        exc = errors.StorageError(exc)  # e.g. litestar spooling a large upload to a full /tmp
    if isinstance(exc, HTTPException):
        message = _HTTP_MESSAGES.get(exc.status_code, exc.detail)
        body: dict[str, Any] = {"message": message, "type": "invalid_request"}
        if isinstance(exc, ValidationException) and exc.extra:
            body["details"] = exc.extra
        return exc.status_code, {"error": body}
    for kind, status in ERROR_STATUS.items():
        if isinstance(exc, kind):
            message, kind_name = _PLAIN.get(kind, (str(exc), _snake(type(exc).__name__)))
            body = {"message": message, "type": kind_name}
            if isinstance(exc, errors.DocumentRejectedError):
                body["details"] = [{"file": name, "reason": reason}
                                   for name, reason in exc.failures]
            return status, {"error": body}
    log.exception("internal error", exc_info=exc)
    return 500, {"error": {"message": "internal error; see the service log", "type": "internal"}}


def handle_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    status, body = error_body(exc)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return Response(body, status_code=status, headers=headers, media_type=MediaType.JSON)


def _snake(name: str) -> str:
    name = name.removesuffix("Error")
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")

"""Every exception the project raises on purpose, in one place.

Each carries a message written for the person at the keyboard: what went wrong and what to do.
They are turned into exit codes in one place (``rag.cli.main``) and HTTP statuses in one place
(``rag.serve.errors.ERROR_STATUS``).
"""


class RagError(Exception):
    """Base class: an expected failure with a message meant for the user."""


# ---- the caller asked for something that cannot be done -------------------------------------


class InputError(RagError):
    """The caller asked for something invalid: an empty question, an unreadable file, a bad flag."""


class ContextFullError(InputError):
    """The prompt does not fit the model's context window."""


class SettingsError(InputError):
    """A setting (environment variable or flag) has a value that cannot be used."""


class UnreadableDocumentsError(InputError):
    """Files of an index build could not be read: nothing was indexed, the index is unchanged.

    ``failures`` holds one message per file; the CLI prints each on its own line.
    """

    def __init__(self, failures: list[str], files: int, index_dir: str) -> None:
        self.failures = failures
        super().__init__(
            f"{len(failures)} of {files} file(s) could not be read, so nothing was indexed "
            f"(the index at {index_dir} is unchanged)"
        )


class DocumentRejectedError(InputError):
    """Uploaded files cannot be indexed as they are: nothing was stored, the index is unchanged.

    ``failures`` holds ``(file name, reason)`` per refused file; the HTTP reply lists them.
    """

    def __init__(self, failures: list[tuple[str, str]], files: int) -> None:
        self.failures = failures
        first = failures[0][1]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(f"{first}{more}; nothing of the {files} file(s) sent was indexed "
                         "and the index is unchanged")


class DocumentTooLargeError(DocumentRejectedError):
    """An uploaded file is larger than the upload limit."""


class UnsupportedDocumentError(DocumentRejectedError):
    """An uploaded file's content is none of the supported types, whatever its name says."""


class UnknownDocumentError(InputError):
    """No indexed document has the given id."""


class UnknownJobError(InputError):
    """No upload job has the given id."""


class StorageError(RagError):
    """The disk refused a write (full, over quota, read-only): nothing changed, the write can be
    retried."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(f"the disk refused the write ({cause.strerror or cause}): nothing was "
                         "indexed and the index is as it was; retry when there is room")


class UnauthorizedError(RagError):
    """The request carries no valid API key."""


class ForbiddenError(RagError):
    """The request names a host the service does not answer to, or comes from a web page of
    another origin (a page the user visits must not write to, or read from, a local service)."""


# ---- what the service needs is missing or broken --------------------------------------------


class IndexNotFoundError(RagError):
    """No index exists at the configured location."""


class IndexMismatchError(RagError):
    """The index on disk was built with other models or an older format than this code expects."""


class ModelNotFoundError(RagError):
    """A model file or model package is missing."""


class ModelIntegrityError(RagError):
    """A model file does not match its published checksum."""


class LlamaBuildError(RagError):
    """The llama.cpp build cannot be made or is not the one this project chose."""


class LlamaRuntimeError(RagError):
    """llama.cpp cannot run a model on this machine (its self-test crashed or failed)."""


class NotReadyError(RagError):
    """The index and models are still loading (or failed to load)."""


class ReloadFailedError(RagError):
    """The new index did not load; the old one is still served."""


class ServiceBusyError(RagError):
    """Too many requests are already waiting for the model."""


# ---- a request stopped before its answer -----------------------------------------------------


class CancelledError(RagError):
    """The request was abandoned by its client."""


class DeadlineExceededError(RagError):
    """The answer took longer than the generation deadline allows."""

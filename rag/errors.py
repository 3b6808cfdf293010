"""The exceptions the project raises on purpose.

Each carries a message written for the person at the keyboard: what went wrong and what to do.
They are turned into exit codes (CLI) and HTTP statuses (service) in one place each.
"""


class RagError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class InputError(RagError):
    """The caller asked for something invalid: an empty question, an unreadable file, a bad flag."""


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


class IndexNotFoundError(RagError):
    """No index exists at the configured location."""


class IndexMismatchError(RagError):
    """The index on disk was built with other models or an older format than this code expects."""


class ModelNotFoundError(RagError):
    """A model file or model package is missing."""


class ModelIntegrityError(RagError):
    """A model file does not match its published checksum."""



class LlamaRuntimeError(RagError):
    """llama.cpp cannot run a model on this machine (its self-test crashed or failed)."""


class CancelledError(RagError):
    """The request was abandoned by its client."""


class DeadlineExceededError(RagError):
    """The answer took longer than the generation deadline allows."""

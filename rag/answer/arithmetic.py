"""Computed answers: a number the passages do not state but that follows from numbers they do.

"How many years after the bridge opened (1932) was it rebuilt (1971)?" is answered by 39,
which no sentence says. The model may write such a number; this module checks
it by code, never by the model: an answer to an amount question ("how many", "how much", "how
long", "how old", "how far") that is one number, with or without a unit, is *derived* when it is
the difference or the sum of two numbers of the sentences closest to the question, the count of
the items a sentence lists, or the months between two months they name. The derivation names its
inputs, whose sentences become the answer's citations, and the answer is given with the unit the
question asks for ("39" to "How many years …" is "39 years").
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

_AMOUNT = re.compile(r"\bhow (many|much|long|old|far)\b", re.IGNORECASE)
_UNIT = re.compile(r"\bhow many ((?:[a-z]+\s+){0,3}[a-z]+)", re.IGNORECASE)
_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
# A number as written in text: 1,234.5 or 12 (not part of a word such as "utf8" or "3.1.2").
_NUMERAL = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w]|\.\d)"
                      r"|(?<![\w.])\d+(?:\.\d+)?(?![\w]|\.\d)")
_ANSWER = re.compile(r"^\s*(?:about |around |approximately )?(?P<number>[\d,]+(?:\.\d+)?|"
                     + "|".join(_NUMBER_WORDS) + r")(?P<unit>(?:\s+[a-z]+){0,2})\s*\.?\s*$",
                     re.IGNORECASE)
# How many sentences, closest to the question first, may hold a computation's inputs.
INPUT_SENTENCES = 3


@dataclass(frozen=True)
class Derivation:
    value: float
    how: str  # the computation, e.g. "1965 - 1945"
    sentences: tuple[int, ...]  # indices of the sentences that hold its inputs


def asks_amount(question: str) -> bool:
    return bool(_AMOUNT.search(question))


def answer_value(answer: str) -> tuple[float, str] | None:
    """The number an answer states and the unit words after it; None unless it is one number."""
    match = _ANSWER.match(answer.lower())
    if match is None:
        return None
    number = match["number"]
    value = _NUMBER_WORDS.get(number)
    return (float(value) if value is not None else float(number.replace(",", "")),
            match["unit"].strip())


def derive(question: str, answer: str, sentences: list[str]) -> Derivation | None:
    """How ``answer`` follows from the ``sentences`` (closest to the question first), if it is a
    computed answer to an amount question; None otherwise."""
    if not asks_amount(question):
        return None
    parsed = answer_value(answer)
    if parsed is None:
        return None
    value, unit = parsed
    asked = asked_unit(question) or _stem(unit.split()[-1]) if unit else asked_unit(question)
    if asked is None:
        return None
    for derivation in derivations(asked, sentences[:INPUT_SENTENCES]):
        if abs(derivation.value - value) < 1e-9:
            return derivation
    return None


def asked_unit(question: str) -> str | None:
    """The (stemmed) thing a "how many" question counts, the first plural of the words after
    it, else the first word: "How many more bytes …" -> "byte"."""
    match = _UNIT.search(question)
    if match is None:
        return None
    following = re.findall(r"[a-z]+", match[1].lower())
    plural = next((w for w in following if w.endswith("s") and not w.endswith("ss")), None)
    return _stem(plural or following[0]) if following else None


def derivations(unit: str, sentences: list[str]) -> list[Derivation]:
    """Every count, difference, sum and span of ``unit`` the sentences allow: the items of a
    list (whatever they are: the decision weighs a computed answer by what it has seen of them,
    ``rag.decision.features``); two numbers of ``unit`` ("24 bytes", "6 bytes"), or two years
    for years; two months for months."""
    found = [Derivation(float(n), f"{n} items listed", (i,))
             for i, s in enumerate(sentences) if (n := listed_items(s)) >= 2]
    numbers = [(value, i) for i, s in enumerate(sentences)
               for value in {*numbers_of(unit, s), *(years_in(s) if unit == "year" else ())}]
    for (a, i), (b, j) in itertools.combinations(numbers, 2):
        where = tuple(sorted({i, j}))
        found.append(Derivation(abs(a - b), f"{_show(max(a, b))} - {_show(min(a, b))}", where))
        if unit != "year":
            found.append(Derivation(a + b, f"{_show(a)} + {_show(b)}", where))
    if unit == "month":
        months = [(m, i) for i, s in enumerate(sentences) for m in months_in(s)]
        for (a, i), (b, j) in itertools.combinations(months, 2):
            span = (b - a) % 12
            found.append(Derivation(float(min(span, 12 - span) or 12),
                                    f"{_MONTHS[a].title()} to {_MONTHS[b].title()}",
                                    tuple(sorted({i, j}))))
    return found


def numbers_in(sentence: str) -> list[float]:
    return [float(m.group().replace(",", "")) for m in _NUMERAL.finditer(sentence)]


def numbers_of(unit: str, sentence: str) -> list[float]:
    """The numbers of ``sentence`` that count ``unit``: followed by it within two words."""
    found = []
    for match in _NUMERAL.finditer(sentence):
        after = re.findall(r"[a-z]+", sentence[match.end():].lower())[:2]
        if unit in map(_stem, after):
            found.append(float(match.group().replace(",", "")))
    return found


def years_in(sentence: str) -> list[float]:
    return [v for v in numbers_in(sentence) if v.is_integer() and 1000 <= v <= 2100]


def _stem(word: str) -> str:
    """A plural's singular, enough to match "bytes" with "byte" and "entries" with "entry"."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def months_in(sentence: str) -> list[int]:
    lowered = sentence.lower()
    return [i for i, name in enumerate(_MONTHS) if re.search(rf"\b{name}\b", lowered)]


def listed_items(sentence: str) -> int:
    """The items of the longest list in ``sentence`` ("a, b, c and d" has 4), 0 for none."""
    best = 0
    for clause in re.split(r"[;:]", sentence):
        parts = [p for p in re.split(r",\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+", clause)
                 if p.strip()]
        if len(parts) >= 2 and re.search(r",", clause):
            best = max(best, len(parts))
    return best


def with_unit(question: str, answer: str) -> str:
    """``answer`` with the unit the question asks for when it has none ("39" -> "39 years")."""
    parsed = answer_value(answer)
    unit = asked_unit(question)
    if parsed is None or unit is None or parsed[1]:
        return answer
    return f"{answer.strip().rstrip('.')} {unit if parsed[0] == 1 else _plural(unit)}"


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"


def _show(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)

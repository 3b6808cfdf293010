"""Answer types: some questions name the kind of answer they want, and a draft must be one.

"How much compensation ...?" wants an amount; "compensation for wartime labor" is not one, however
well a passage supports its words. Small models fill such gaps with the nearest phrase, so a
draft of the wrong kind is a sign the passages lack the answer. Only question forms whose
expected answer can be recognized by its surface are checked; all others pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER_WORDS = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|"
    r"hundreds?|thousands?|millions?|billions?|trillions?|dozens?|half|twice|double|triple|"
    r"several|few|many|single|once|none|no"
)
_MONTHS = (
    r"january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec"
)
_TIMES_OF_DAY = (
    r"morning|afternoon|evening|night|noon|midnight|dawn|dusk|midday|a\.?m|p\.?m|o'clock"
)


@dataclass(frozen=True)
class AnswerType:
    name: str
    asked: re.Pattern[str]  # matches a question that wants this type
    present: re.Pattern[str]  # matches an answer of this type


ANSWER_TYPES = (
    AnswerType(
        "an amount",
        re.compile(r"\bhow (many|much)\b"),
        re.compile(rf"\d|%|\b({_NUMBER_WORDS})\b"),
    ),
    AnswerType(
        "a year",
        re.compile(r"\b(what|which) year\b"),
        re.compile(r"\d{2,4}"),
    ),
    AnswerType(
        "a date",
        re.compile(r"\b(what|which) date\b"),
        re.compile(rf"\d|\b({_MONTHS})\b"),
    ),
    AnswerType(
        "a time of day",
        re.compile(r"\bwhat time\b(?! (period|frame|span|of (the )?year))|\btime of day\b"),
        re.compile(rf"\d|\b({_TIMES_OF_DAY})\b"),
    ),
    AnswerType(
        "a percentage",
        re.compile(r"\bwhat (percentage|percent|share|proportion)\b"),
        re.compile(rf"\d|%|percent|\b({_NUMBER_WORDS})\b"),
    ),
)


def type_mismatch(question: str, answer: str) -> str | None:
    """The kind of answer ``question`` asks for when ``answer`` is not of that kind, else None."""
    question, answer = question.lower(), answer.lower()
    for kind in ANSWER_TYPES:
        if kind.asked.search(question) and not kind.present.search(answer):
            return kind.name
    return None

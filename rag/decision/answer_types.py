"""Answer types: some questions name the kind of answer they want, and a draft must be one.

"How much compensation ...?" wants an amount; "compensation for wartime labor" is not one, however
well a passage supports its words. Small models fill such gaps with the nearest phrase, so a
draft of the wrong kind is a sign the passages lack the answer. Only question forms whose
expected answer can be recognized by its surface are checked; all others pass.
"""

from __future__ import annotations

import re

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


# Each answer type: (its name, what a question that wants it says, what an answer of it has).
ANSWER_TYPES: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (name, re.compile(asked), re.compile(present)) for name, asked, present in (
        ("an amount", r"\bhow (many|much)\b", rf"\d|%|\b({_NUMBER_WORDS})\b"),
        ("a year", r"\b(what|which) year\b", r"\d{2,4}"),
        ("a date", r"\b(what|which) date\b", rf"\d|\b({_MONTHS})\b"),
        ("a time of day",
         r"\bwhat time\b(?! (period|frame|span|of (the )?year))|\btime of day\b",
         rf"\d|\b({_TIMES_OF_DAY})\b"),
        ("a percentage", r"\bwhat (percentage|percent|share|proportion)\b",
         rf"\d|%|percent|\b({_NUMBER_WORDS})\b"),
    )
)


def type_mismatch(question: str, answer: str) -> str | None:
    """The kind of answer ``question`` asks for when ``answer`` is not of that kind, else None."""
    question, answer = question.lower(), answer.lower()
    for name, asked, present in ANSWER_TYPES:
        if asked.search(question) and not present.search(answer):
            return name
    return None

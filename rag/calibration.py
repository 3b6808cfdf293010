"""A calibrated refusal: one logistic regression over the refusal signals.

The rule signals (answer type, echo, invented name, the odds-product confidence) each carry a
threshold or pattern chosen by hand; this model weighs the same evidence at once: the model's
P(found) and the verifier's P(yes) (as log-odds), the best citation support, the best passage
similarity, how much of the question the supporting sentences mention, and the rule signals'
flags. It is fitted on tuning data only (``python -m
eval.calibrate``, which writes ``rag/refusal_model.json``) and refuses a draft whose estimated
probability of being right is below the threshold chosen there.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from rag.lexical import terms

MODEL_FILE = Path(__file__).resolve().parent / "refusal_model.json"
FEATURES = ("found_logit", "verification_logit", "best_support", "best_similarity",
            "question_coverage", "answer_type", "echo", "invented_name")
# The rule signals whose flags are features here (they do not refuse on their own then).
FLAG_SIGNALS = {"answer_type": "answer type", "echo": "echo", "invented_name": "invented name"}


@dataclass(frozen=True)
class RefusalModel:
    weights: dict[str, float]
    bias: float
    threshold: float  # refuse below this estimated probability that the draft is right
    fitted_on: list[str]  # the reports (tuning data) it was fitted on
    generator: str  # the model whose drafts it judges

    def p_right(self, features: dict[str, float]) -> float:
        z = self.bias + sum(self.weights[name] * features[name] for name in FEATURES)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def save(self, path: Path = MODEL_FILE) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def load(path: Path = MODEL_FILE) -> RefusalModel | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return RefusalModel(**data)


def logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def question_coverage(question: str, evidence: str) -> float:
    """The share of the question's content terms that the answer's supporting sentences contain.

    An unanswerable question that resembles the text often asks about something the sentence
    the answer comes from does not mention (another name, year or role)."""
    asked = set(terms(question))
    return len(asked & set(terms(evidence))) / len(asked) if asked else 1.0


def features(found: float, verification: float, best_support: float, best_similarity: float,
             coverage: float, flags: dict[str, bool]) -> dict[str, float]:
    return {
        "found_logit": logit(found),
        "verification_logit": logit(verification),
        "best_support": best_support,
        "best_similarity": best_similarity,
        "question_coverage": coverage,
        **{name: float(flags[signal]) for name, signal in FLAG_SIGNALS.items()},
    }

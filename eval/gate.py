"""The quality gate: metric bounds per model from ``eval/thresholds.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from eval.metrics import METRIC_NAMES
from rag.errors import InputError

THRESHOLDS = Path(__file__).resolve().parent / "thresholds.toml"


@dataclass(frozen=True)
class Check:
    metric: str
    value: float | None  # None: the run did not measure it (e.g. no unanswerable questions)
    bound: float
    kind: str  # "min" or "max"

    @property
    def passed(self) -> bool:
        # A bound on a metric the run could not measure fails: a gate must not pass silently.
        if self.value is None:
            return False
        return self.value >= self.bound if self.kind == "min" else self.value <= self.bound

    def describe(self) -> str:
        """One line for the gate's verdict, e.g. ``answer_str_em 0.812 vs min 0.85``."""
        if self.value is None:
            return (f"{self.metric} not measured by this run (nothing to measure it on: no "
                    f"unanswerable questions, or no citation made) vs {self.kind} {self.bound}")
        return f"{self.metric} {self.value:.3f} vs {self.kind} {self.bound}"


def load_bounds(section: str, path: Path = THRESHOLDS) -> dict[str, dict[str, float]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read thresholds {path}: {exc}") from None
    if section not in data:
        raise InputError(f"{path} has no [{section}] section (has: {', '.join(data)})")
    bounds = data[section]
    return {kind: dict(bounds.get(kind, {})) for kind in ("min", "max")}


def evaluate(metrics: dict[str, float | None], bounds: dict[str, dict[str, float]]) -> list[Check]:
    """One check per bound; a known metric the run did not produce is a failed check."""
    checks = []
    for kind, limits in bounds.items():
        for metric, bound in limits.items():
            if metric not in METRIC_NAMES:
                raise InputError(f"threshold for unknown metric {metric!r}")
            checks.append(Check(metric, metrics.get(metric), float(bound), kind))
    return checks

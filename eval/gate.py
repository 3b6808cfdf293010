"""The quality gate: metric bounds per model from ``eval/thresholds.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from rag.errors import InputError

THRESHOLDS = Path(__file__).resolve().parent / "thresholds.toml"


@dataclass(frozen=True)
class Check:
    metric: str
    value: float | None
    bound: float
    kind: str  # "min" or "max"

    @property
    def passed(self) -> bool:
        if self.value is None:  # nothing to measure, e.g. no unanswerable questions
            return True
        return self.value >= self.bound if self.kind == "min" else self.value <= self.bound


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
    checks = []
    for kind, limits in bounds.items():
        for metric, bound in limits.items():
            if metric not in metrics:
                raise InputError(f"threshold for unknown metric {metric!r}")
            checks.append(Check(metric, metrics[metric], float(bound), kind))
    return checks

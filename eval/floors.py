"""A gate's bounds, computed from its committed runs: ``MARGIN`` questions beyond the worst.

A section of ``eval/thresholds.toml`` that lists ``runs`` (committed reports, one per CPU build:
the numbers of one build are not those of another) has its bounds computed from them, never set
by hand: each ``min`` bound is the lowest of the runs' counts less ``MARGIN``, over its total;
each ``max`` bound the highest plus ``MARGIN``. A test recomputes them, so a bound that changes
without a new run committed beside it fails. A section with ``replay = true`` scores its runs as
the committed policy decides their recorded drafts (``python -m eval.summarize --replay``): for a
run made before the policy was last fitted, whose drafts do not depend on the policy.

    python -m eval.floors default     # print the section's bounds from its runs, as TOML
"""

from __future__ import annotations

import argparse
import math
import sys
import tomllib
from pathlib import Path
from typing import Any

from eval import gate, metrics
from eval.decisions import as_run, load_rows, outcomes, read_report, replay
from eval.metrics import QuestionOutcome
from rag.decision.scorers import choice_for
from rag.errors import InputError
from rag.settings import PROJECT_ROOT

MARGIN = 2  # questions (or citations) of room below the worst run
DIGITS = 4


def runs_of(section: str, path: Path = gate.THRESHOLDS) -> list[Path]:
    """The committed reports ``section``'s bounds are computed from ([] when set by hand)."""
    return [PROJECT_ROOT / run for run in _section(section, path).get("runs", [])]


def replayed(section: str, path: Path = gate.THRESHOLDS) -> bool:
    """Whether ``section``'s runs are scored as the committed policy decides them."""
    return bool(_section(section, path).get("replay", False))


def _section(section: str, path: Path) -> dict[str, Any]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if section not in data:
        raise InputError(f"{path} has no [{section}] section")
    found: dict[str, Any] = data[section]
    return found


def scored(report: Path, replay_policy: bool = False) -> list[QuestionOutcome]:
    """A report's questions as its run answered them, or as the committed policy decides
    its recorded drafts."""
    data = read_report(report)
    rows = load_rows(data)
    if not replay_policy:
        return as_run(rows)
    policy = choice_for(data["model"]).policy(data["policy"]["min_relevance"])
    return outcomes(rows, replay(rows, policy))


def floors(reports: list[Path], names: dict[str, list[str]], margin: int = MARGIN,
           replay_policy: bool = False) -> dict[str, dict[str, float]]:
    """Bounds on the metrics ``names`` ({"min": [...], "max": [...]}) ``margin`` counts beyond
    the worst of ``reports``."""
    counted = [metrics.counts(scored(r, replay_policy)) for r in reports]
    scale = 10 ** DIGITS
    return {
        "min": {m: min(math.floor((c[m][0] - margin) / c[m][1] * scale) / scale
                       for c in counted) for m in names.get("min", [])},
        "max": {m: max(math.ceil((c[m][0] + margin) / c[m][1] * scale) / scale
                       for c in counted) for m in names.get("max", [])},
    }


def section_floors(section: str) -> dict[str, dict[str, float]]:
    """``section``'s bounds as its runs give them, for the metrics it bounds now."""
    bounds = gate.load_bounds(section)
    return floors(runs_of(section), {kind: list(b) for kind, b in bounds.items()},
                  replay_policy=replayed(section))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.floors", description=__doc__)
    parser.add_argument("section")
    section = parser.parse_args(argv).section
    if not runs_of(section):
        print(f"[{section}] lists no runs", file=sys.stderr)
        return 2
    for kind, bounds in section_floors(section).items():
        print(f"[{section}.{kind}]")
        for name, value in bounds.items():
            print(f"{name} = {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

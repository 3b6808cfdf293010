"""Per-signal contributions from recorded verdicts (golden values on a made-up report)."""

from eval.signals import accuracy, contributions, rows


def _question(answerable: bool, draft: str, fired: list[str]) -> dict[str, object]:
    names = ["model verdict", "answer type", "echo", "invented name", "no support", "confidence"]
    return {"id": "x", "answerable": answerable, "gold_answers": ["Motegi"] if answerable else [],
            "trace": {"draft": draft, "signals": {n: ("why" if n in fired else None)
                                                  for n in names}}}


REPORT = {"per_question": [
    _question(True, "Toshimitsu Motegi", []),  # answered right
    _question(True, "Toshimitsu Motegi", ["confidence"]),  # a right draft refused
    _question(False, "Taro Kono", ["confidence"]),  # an invention caught
    _question(False, "Taro Kono", ["confidence", "invented name"]),  # caught twice
    _question(False, "Yonhap", []),  # an invention missed
    {"id": "y", "answerable": False, "gold_answers": [], "trace": {}},  # refused before drafting
]}


def test_each_signal_is_taken_out_in_turn() -> None:
    found = rows(REPORT)
    assert accuracy(found) == 4 / 6
    table = {t["signal"]: t for t in contributions(found)}
    confidence = table["confidence"]
    assert confidence["fires"] == 3
    assert (confidence["only_it_refuses_unanswerable"], confidence["only_it_refuses_right_draft"]
            ) == (1, 1)
    assert confidence["accuracy_without"] == 4 / 6  # one right draft back, one invention out
    assert table["invented name"]["contribution"] == 0.0  # confidence catches it too

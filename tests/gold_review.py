"""Record of the gold review (docs/gold-review.md); tests/model/test_gold.py checks it stays
applied."""

REMOVED: dict[str, dict[str, list[str]]] = {
    "article.jsonl": {
        "a09": ["1910"],
        "a18": ["at any time", "anytime", "any time"],
        "a21": ["cooperation"],
        "a34": ["trade status", "downgrading", "downgraded"],
        "a37": ["eager", "eagerness", "willingness to improve"],
        "a44": ["ballistic missile", "nuclear"],
        "a48": ["defense"],
        "a55": ["damage"],
        "a57": ["foreign affairs"],
        "a63": ["export control"],
    },
    "article_tune2.jsonl": {
        "t47": ["precious opportunity"],
    },
    "conversation.jsonl": {},
}

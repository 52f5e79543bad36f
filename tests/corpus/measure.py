"""The guard's figures on the labelled SmolLM2 corpus, printed: caught, false rejects and misses
among accepted texts, per labelled reason, for the held-out part (every 4th line, ``HELD_OUT``),
the part the checks were tuned on, and all of it; then each miss and false reject in full.

    nice -n 19 .venv/bin/python -m tests.corpus.measure [--quiet]

The held-out lines were not read while the set-3 rules were written: a rule tuned to the corpus
shows as a gap between the two parts.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from tests.corpus import smollm2


def held_out(index: int) -> bool:
    """Every 4th line of the corpus (0-based lines 3, 7, 11, ...)."""
    return index % 4 == 3


def figures(entries: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    bad = [(i, e) for i, e in entries if e["label"] == "unpublishable"]
    good = [(i, e) for i, e in entries if e["label"] == "publishable"]
    verdicts = {i: smollm2.judge(e) for i, e in entries}
    missed = [(i, e) for i, e in bad if verdicts[i] is None]
    false = [(i, e, verdicts[i]) for i, e in good if verdicts[i]]
    accepted = sum(v is None for v in verdicts.values())
    per_reason: Counter[tuple[str, str]] = Counter()
    for i, e in bad:
        for r in e["reasons"]:
            per_reason[(r, "caught" if verdicts[i] else "missed")] += 1
    return {"bad": len(bad), "good": len(good), "caught": len(bad) - len(missed), "missed": missed,
            "false": false, "accepted": accepted, "per_reason": per_reason,
            "rejects": Counter(v for v in verdicts.values() if v)}


def line(name: str, f: dict[str, Any]) -> str:
    pct = lambda a, b: f"{100 * a / b:.0f}%" if b else "-"
    return (f"{name:9} caught {f['caught']}/{f['bad']} ({pct(f['caught'], f['bad'])}), "
            f"false rejects {len(f['false'])}/{f['good']} ({pct(len(f['false']), f['good'])}), "
            f"misses {len(f['missed'])} of {f['accepted']} accepted ({pct(len(f['missed']), f['accepted'])})")


def main() -> None:
    corpus = list(enumerate(smollm2.load()))
    parts = {"held-out": [(i, e) for i, e in corpus if held_out(i)],
             "tuned": [(i, e) for i, e in corpus if not held_out(i)], "all": corpus}
    results = {k: figures(v) for k, v in parts.items()}
    for k, f in results.items():
        print(line(k, f))
    f = results["all"]
    print("\nper labelled reason (a text may carry several): caught / missed")
    for r in sorted({r for r, _ in f["per_reason"]}):
        print(f"  {r:20} {f['per_reason'][(r, 'caught')]:3} / {f['per_reason'][(r, 'missed')]}")
    print("\nrejects by the guard's first reason:", dict(f["rejects"].most_common()))
    if "--quiet" in sys.argv:
        return
    print("\nmisses (unpublishable, accepted):")
    for i, e in f["missed"]:
        tag = "H" if held_out(i) else " "
        print(f" {tag}{i:4} {e['task']:11} {e['reasons']} | {e['facts'].get('title')}\n"
              f"       {smollm2.published(e)[0]!r}\n       note: {e['note']}")
    print("\nfalse rejects (publishable, rejected):")
    for i, e, why in f["false"]:
        tag = "H" if held_out(i) else " "
        print(f" {tag}{i:4} {e['task']:11} {why} | {e['facts'].get('title')}\n       {e['text']!r}")


if __name__ == "__main__":
    main()

"""Evaluation metrics: loss/perplexity, BLEU and chrF (sacrebleu), ROUGE-L (rouge-score) and the
guardrail pass rate of generated texts.

Scores are on a 0-100 scale (sacrebleu's convention; ROUGE-L F1 is multiplied by 100), so one table
reads uniformly. The guardrail check is ``pdgen_core.guardrails.run_checks`` over the task's
guardrail set (the same checks generation applies) when that package is present; otherwise a simple
check: non-empty, at least 20 characters, not degenerate-repetitive.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from pdgen_core.finetune.data import normalise

MIN_CHARS = 20


def perplexity(mean_loss: float) -> float:
    """exp(mean token loss), capped so a diverged run reports a big number rather than inf."""
    return math.exp(min(mean_loss, 50.0))


def is_degenerate(text: str) -> bool:
    """A word repeated 4+ times in a row, or fewer than half of the word trigrams distinct."""
    words = normalise(text).split()
    run = 1
    for a, b in zip(words, words[1:]):
        run = run + 1 if a == b else 1
        if run >= 4:
            return True
    tri = list(zip(words, words[1:], words[2:]))
    return len(tri) >= 6 and len(set(tri)) / len(tri) < 0.5


def simple_pass(text: str) -> bool:
    s = (text or "").strip()
    return len(s) >= MIN_CHARS and not is_degenerate(s)


def _guardrails(task: str) -> Callable[[str, dict, str], str | None] | None:
    """``pdgen_core.guardrails.run_checks`` over the task's guardrail set, when that module exists."""
    try:
        from pdgen_core.guardrails import GuardContext, run_checks
    except ImportError:
        return None
    from pdgen_core.tasks import TASKS

    names = TASKS[task].guardrails

    def check(text: str, row: dict, currency: str) -> str | None:
        ctx = GuardContext(locale="en", title=row.get("title"), brand=row.get("brand"),
                           price=row.get("price"), currency=currency, min_chars=MIN_CHARS)
        return run_checks(names, text, ctx)

    return check


def guard_reasons(texts: list[str], task: str = "description", rows: list[dict] | None = None,
                  currency: str = "USD") -> list[str | None]:
    """Each text's guardrail failure reason, or None where it passes."""
    check = _guardrails(task)
    out: list[str | None] = []
    for i, t in enumerate(texts):
        if check is not None:
            out.append(check(t, rows[i] if rows else {}, currency))
        else:
            out.append(None if simple_pass(t) else ("too_short" if len((t or "").strip()) < MIN_CHARS else "repetition"))
    return out


def guard_results(texts: list[str], task: str = "description", rows: list[dict] | None = None,
                  currency: str = "USD") -> tuple[float, dict[str, int]]:
    """Pass rate (0-100) of ``texts`` under the guardrails, and the count of each failure reason."""
    reasons: dict[str, int] = {}
    for reason in guard_reasons(texts, task, rows, currency):
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
    return (100.0 * (len(texts) - sum(reasons.values())) / len(texts) if texts else 0.0), reasons


def guard_pass_rate(texts: list[str], task: str = "description", rows: list[dict] | None = None,
                    currency: str = "USD") -> float:
    return guard_results(texts, task, rows, currency)[0]


def text_metrics(hyps: list[str], refs: list[str], task: str = "description",
                 rows: list[dict] | None = None, currency: str = "USD") -> dict[str, Any]:
    """BLEU, chrF, ROUGE-L (mean F1) and guardrail pass rate, all 0-100, over paired texts."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    if not hyps:
        return {"bleu": 0.0, "chrf": 0.0, "rougeL": 0.0, "guard_pass": 0.0, "n": 0}
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / len(hyps)
    passed, reasons = guard_results(hyps, task, rows, currency)
    return {
        "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
        "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
        "rougeL": 100.0 * rouge,
        "guard_pass": passed,
        "guard_fail_reasons": reasons,
        "n": len(hyps),
    }


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` in direction ``mode``."""
    if best is None or best != best:
        return value == value
    return value < best - min_delta if mode == "min" else value > best + min_delta

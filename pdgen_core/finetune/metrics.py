"""Evaluation metrics: loss/perplexity, BLEU and chrF (sacrebleu), ROUGE-L (rouge-score) and the
guardrail pass rate of generated texts, judged as the guard stage judges them.

Scores are on a 0-100 scale (sacrebleu's convention; ROUGE-L F1 is multiplied by 100), so one table
reads uniformly. The guardrail check is ``pdgen_core.guardrails.run_checks`` over the task's
guardrail set (the same checks generation applies) when that package is present; otherwise a simple
check: non-empty, at least 20 characters, not degenerate-repetitive.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from pdgen_core.finetune.data import normalise
from pdgen_core.tasks import TASKS

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


# The checks that hold a text to its row's facts (issue 17's grounding set): reported apart, as
# the share of otherwise-accepted texts they refuse.
GROUNDING = frozenset({"price", "brand", "brand.other", "brand.missing", "names", "attributes", "numbers"})


def _guardrails(task: str, prompt_format: str = "completion",
                known_brands: frozenset[str] = frozenset()) -> Callable[..., tuple[str | None, bool]] | None:
    """The guard stage's judgement of one text (``stages/guard.py``: the task's guardrails, its
    form check, its fact grounding), as ``(reason, grounding)`` where ``grounding`` says the text
    passed every other check and failed only a grounding one; ``None`` without the package."""
    try:
        from pdgen_core.guardrails import GuardContext, run_checks
        from pdgen_core.guardrails.truncation import trim_to_sentence
    except ImportError:
        return None

    t = TASKS[task]
    other = tuple(n for n in t.guardrails if n not in GROUNDING)
    grounding = tuple(n for n in t.guardrails if n in GROUNDING)
    system = t.template_source("en", "chat" if prompt_format == "chat" else "completion")

    def check(text: str, row: dict, currency: str, finish: str = "stop") -> tuple[str | None, bool]:
        if finish == "length" and t.output != "json":  # as the guard stage: keep whole sentences
            kept = trim_to_sentence(text, "en")
            if kept is not None:
                text, finish = kept, "stop"
        fields = {f: row.get(f) for f in t.fields}
        ctx = GuardContext(locale="en", title=row.get("title"), brand=row.get("brand"),
                           price=row.get("price"), currency=currency, known_brands=known_brands,
                           input_texts=tuple(str(v) for v in fields.values() if isinstance(v, str) and v),
                           system_prompt=system, min_chars=MIN_CHARS, fields=fields, finish_reason=finish)
        text = t.guard_text(text)
        if reason := run_checks(other, text, ctx):
            return reason, False
        if t.parse is not None and (reason := t.parse(text)):
            return reason, False
        reason = run_checks(grounding, text, ctx)
        if reason is None and t.ground is not None:
            reason = t.ground(text, fields)
        return reason, reason is not None

    return check


def guard_judgements(texts: list[str], task: str = "description", rows: list[dict] | None = None,
                     currency: str = "USD", finish: list[str] | None = None, prompt_format: str = "completion",
                     known_brands: frozenset[str] = frozenset()) -> list[tuple[str | None, bool]]:
    """Each text's ``(reason or None, failed only on grounding)``; ``finish`` is each text's
    finish reason (``length``: cut at the token limit, trimmed to whole sentences as generation does)."""
    check = _guardrails(task, prompt_format, known_brands)
    out: list[tuple[str | None, bool]] = []
    for i, t in enumerate(texts):
        if check is not None:
            out.append(check(t or "", rows[i] if rows else {}, currency, finish[i] if finish else "stop"))
        else:
            ok = simple_pass(t)
            out.append((None if ok else ("too_short" if len((t or "").strip()) < MIN_CHARS else "repetition"), False))
    return out


def guard_reasons(texts: list[str], task: str = "description", rows: list[dict] | None = None,
                  currency: str = "USD", **kw: Any) -> list[str | None]:
    """Each text's guardrail failure reason, or None where it passes."""
    return [r for r, _ in guard_judgements(texts, task, rows, currency, **kw)]


def guard_results(texts: list[str], task: str = "description", rows: list[dict] | None = None,
                  currency: str = "USD", **kw: Any) -> tuple[float, dict[str, int]]:
    """Pass rate (0-100) of ``texts`` under the guardrails, and the count of each failure reason."""
    reasons: dict[str, int] = {}
    for reason in guard_reasons(texts, task, rows, currency, **kw):
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
    return (100.0 * (len(texts) - sum(reasons.values())) / len(texts) if texts else 0.0), reasons


def guard_pass_rate(texts: list[str], task: str = "description", rows: list[dict] | None = None,
                    currency: str = "USD") -> float:
    return guard_results(texts, task, rows, currency)[0]


def text_metrics(hyps: list[str], refs: list[str], task: str = "description",
                 rows: list[dict] | None = None, currency: str = "USD", **guard: Any) -> dict[str, Any]:
    """BLEU, chrF, ROUGE-L (mean F1) and guardrail pass rate, all 0-100, over paired texts; and
    ``grounding_fail``: of the texts every other check accepts, the share (0-100) that a grounding
    check (``GROUNDING``, the task's ``ground``) refuses. ``guard`` goes to ``guard_judgements``."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    if not hyps:
        return {"bleu": 0.0, "chrf": 0.0, "rougeL": 0.0, "guard_pass": 0.0, "grounding_fail": 0.0, "n": 0}
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / len(hyps)
    judged = guard_judgements(hyps, task, rows, currency, **guard)
    reasons: dict[str, int] = {}
    for reason, _ in judged:
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
    passed = 100.0 * sum(r is None for r, _ in judged) / len(judged)
    ground_fail = sum(g for _, g in judged)
    return {
        "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
        "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
        "rougeL": 100.0 * rouge,
        "guard_pass": passed,
        "grounding_fail": 100.0 * ground_fail / max(1, ground_fail + sum(r is None for r, _ in judged)),
        "guard_fail_reasons": reasons,
        "n": len(hyps),
    }


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` in direction ``mode``."""
    if best is None or best != best:
        return value == value
    return value < best - min_delta if mode == "min" else value > best + min_delta

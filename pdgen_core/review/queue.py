"""A staged run's review queue, per task and locale: a random sample sized by ``stats`` plus every
borderline row (retried, trimmed at max_tokens, or with flagged inputs), and what a row page
shows (published text, proposed text, word diff, guard history, lineage).

The sample is seeded by the run, task and locale, so the queue is the same on every page load
and after a restart. The staged table never changes once committed, so it is read once per task.
"""

from __future__ import annotations

import difflib
import json
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

from pdgen_core import storage
from pdgen_core.review import stats
from pdgen_core.stages import commit

Key = tuple  # (sku, locale, variant)


def key_of(r: dict) -> Key:
    return (r["sku"], r["locale"], r["variant"] or "")


@lru_cache(maxsize=64)
def staged_rows(output_uri: str, run_id: str, task: str) -> tuple[dict, ...]:
    """The run's proposed rows for ``task`` (upserts; tombstones are not texts to review)."""
    loc = commit.staged_table(storage.resolve(output_uri), run_id, task)
    table = commit.open_table(loc)
    if table is None:
        return ()
    t = storage.plain_types(table.to_pyarrow_table(filesystem=storage.table_filesystem(loc)))
    t = t.filter(pc.equal(t.column("_op"), "upsert"))
    return tuple(sorted(t.to_pylist(), key=key_of))


def borderline(r: dict) -> list[str]:
    """Why a row is borderline (empty: it is not)."""
    why = []
    if (r.get("attempts") or 1) > 1:
        last = f"; attempt {r['attempts'] - 1} rejected: {r['retry_reason']}" if r.get("retry_reason") else ""
        why.append(f"retried (attempt {r['attempts']}{last})")
    if r.get("finish_reason") == "length_trimmed":
        why.append("trimmed (cut at max_tokens, kept to its last sentence)")
    if r.get("input_flags"):
        why.append(f"flagged inputs: {r['input_flags']}")
    return why


@dataclass
class LocaleQueue:
    task: str
    locale: str
    population: int
    target: float
    sample: list[Key]
    borderline: dict[Key, list[str]] = field(default_factory=dict)

    @property
    def keys(self) -> list[Key]:
        """The sample first, then the borderline rows not in it."""
        return self.sample + [k for k in sorted(self.borderline) if k not in set(self.sample)]


def build(output_uri: str, run_id: str, task: str, target: float | None) -> list[LocaleQueue]:
    rows = staged_rows(output_uri, run_id, task)
    target = target or stats.DEFAULT_TARGET
    out = []
    for locale in sorted({r["locale"] for r in rows}):
        keys = [key_of(r) for r in rows if r["locale"] == locale]
        rng = random.Random(f"{run_id}/{task}/{locale}")
        sample = sorted(rng.sample(keys, stats.sample_size(len(keys), target)))
        border = {key_of(r): why for r in rows if r["locale"] == locale and (why := borderline(r))}
        out.append(LocaleQueue(task, locale, len(keys), target, sample, border))
    return out


def published(output_uri: str, task: str, skus: list[str]) -> dict[Key, dict]:
    """The published rows of these skus (``content/<task>``'s latest version)."""
    loc = storage.resolve(output_uri).child("content", task)
    table = commit.open_table(loc)
    if table is None or not skus:
        return {}
    t = storage.plain_types(table.to_pyarrow_table(filesystem=storage.table_filesystem(loc)))
    t = t.filter(pc.is_in(t.column("sku"), value_set=pa.array(sorted(set(skus)))))
    return {key_of(r): r for r in t.to_pylist()}


def past_rejects(output_uri: str, task: str, key: Key) -> list[dict]:
    """This row's rejects in earlier runs (the guard's and reviewers'), newest first."""
    loc = storage.resolve(output_uri).child("rejects", task)
    table = commit.open_table(loc)
    if table is None:
        return []
    t = storage.plain_types(table.to_pyarrow_table(filesystem=storage.table_filesystem(loc)))
    rows = [r for r in t.filter(pc.equal(t.column("sku"), key[0])).to_pylist()
            if r["locale"] == key[1] and (r.get("variant") or "") == key[2]]
    return sorted(rows, key=lambda r: str(r.get("rejected_at")), reverse=True)


def facts(row: dict) -> list[tuple[str, str]]:
    """The fields the task's template read (the row's ``inputs``), as (name, value) strings."""
    try:
        fields = json.loads(row.get("inputs") or "{}")
    except ValueError:
        return [("inputs", str(row.get("inputs")))]
    return [(k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for k, v in sorted(fields.items())]


_TOKENS = re.compile(r"\s+|[^\s]+")


def word_diff(old: str | None, new: str | None) -> list[tuple[str, str]]:
    """(op, text) segments, op in equal | delete | insert, word by word (difflib)."""
    a, b = _TOKENS.findall(old or ""), _TOKENS.findall(new or "")
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("equal", "".join(a[i1:i2])))
            continue
        if op in ("delete", "replace"):
            out.append(("delete", "".join(a[i1:i2])))
        if op in ("insert", "replace"):
            out.append(("insert", "".join(b[j1:j2])))
    return out

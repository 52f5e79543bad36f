"""Fine-tune pairs from a catalog: (the task's generation prompt -> the catalog's own description).

The prompt is the very prompt generation sends, so training and generation agree: the completion
template (``TASKS[task].render``) or, for a chat model, the task's messages through the model's
chat template (``chat_prompt``). The answer is the cleaned reference text followed by the
tokenizer's eos (``<|im_end|>`` for a chat model: the end of the assistant's turn); the loss is
masked to the answer tokens.

Reference texts are repaired before training (``repair_glued``): scraped catalogs glue list items
together ("a TSA lockOne handle", "bandhgala suitBlue self-design"); where both halves are words
of the catalog's own vocabulary the join becomes a sentence break, and a text that keeps a glued
pair of non-words is dropped. Rows are dropped with a counted reason (no description, too short,
too long, duplicate text, glued words), never silently. The train/val/test split hashes a *group* key: products that share a normalised title or
a normalised description fall into one group (union-find), so near-duplicates (the same product
under another id, size variants) never straddle the split.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from pdgen_core.models.chat import render
from pdgen_core.spec import CANONICAL_COLUMNS
from pdgen_core.tasks import TASKS

SYNTH_COLUMNS = {"sku": "product_id", "title": "product_name", "price": "price_usd"}
_NON_WORD = re.compile(r"[^\w]+")


@dataclass(frozen=True)
class Pair:
    sku: str
    prompt: str
    target: str
    title: str = ""
    brand: str | None = None      # kept for the guardrail checks of generated samples
    price: float | None = None
    source: str = ""              # the reference as the catalog has it (before repair): the split key


def clean_text(value: Any) -> str | None:
    """One line, whitespace collapsed (NBSP and newlines included); ``None`` when empty."""
    if value is None:
        return None
    s = " ".join(str(value).split())
    return s or None


def normalise(text: str) -> str:
    """The form used for dedup and split keys: lower case, punctuation and spacing removed."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def _clean_row(raw: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for k, v in raw.items():
        if k == "price":
            try:
                f = float(v) if v is not None else None
            except (TypeError, ValueError):
                f = None
            row[k] = f if f is not None and f == f and f not in (float("inf"), float("-inf")) else None
        else:
            row[k] = clean_text(v)
    return row


def rows_from_table(table, columns: dict[str, str]) -> list[dict[str, Any]]:
    """Canonical, cleaned rows from a pyarrow table and a canonical -> column mapping."""
    names = set(table.column_names)
    missing = sorted(src for src in columns.values() if src not in names)
    if missing:
        raise ValueError(f"data.columns names column(s) {missing} that the catalog lacks; "
                         f"it has {sorted(names)}")
    pick = {c: columns.get(c, c) for c in CANONICAL_COLUMNS if columns.get(c, c) in names}
    if "description" not in pick or "title" not in pick:
        raise ValueError("fine-tuning needs `title` and `description` columns: map them in data.columns "
                         f"(the catalog has {sorted(names)})")
    cols = {c: table.column(src).to_pylist() for c, src in pick.items()}
    n = table.num_rows
    return [_clean_row({c: cols[c][i] for c in cols}) for i in range(n)]


def load_rows(uri: str, columns: dict[str, str], limit: int | None = None) -> list[dict[str, Any]]:
    """Read a catalog (Parquet file/folder, s3:// or local; or ``synth://ROWS``) as canonical rows."""
    if uri.startswith("synth://"):
        from pdgen_core import synth

        rows = int(uri[len("synth://"):] or 0)
        if rows <= 0:
            raise ValueError(f"data.uri {uri!r}: use synth://ROWS with ROWS > 0, e.g. synth://5000")
        table = synth.make_catalog(rows, seed=0)
        columns = {**SYNTH_COLUMNS, **columns}
    else:
        import pyarrow.parquet as pq

        from pdgen_core import storage

        loc = storage.resolve(uri)
        if not storage.exists(loc):
            raise FileNotFoundError(f"data.uri {uri!r}: nothing there; point it at a Parquet file or folder")
        table = pq.read_table(loc.path, filesystem=loc.fs)
    if limit:
        table = table.slice(0, limit)
    return rows_from_table(table, columns)


# A lowercase letter run into a capitalised word: "lockOne", "suitBlue", "BatteryDial", "hemA".
_GLUE = re.compile(r"(?<![A-Za-z])([A-Za-z]*[a-z])([A-Z][a-z]*)(?=[^A-Za-z]|$)")
# A sentence end run into the next one: "cotton.Machine wash" (not "e.g.Cotton": both sides words).
_GLUE_PUNCT = re.compile(r"(?<![A-Za-z])([A-Za-z]*[a-z])([.;:])([A-Z][a-z]*)(?=[^A-Za-z]|$)")
_WORD = re.compile(r"(?<![A-Za-z])[A-Za-z]+(?![A-Za-z])")
VOCAB_MIN_COUNT = 2   # a word seen at least twice on its own in the catalog is a word


def vocabulary(rows: Iterable[dict[str, Any]], min_count: int = VOCAB_MIN_COUNT) -> frozenset[str]:
    """Lower-cased words standing alone (not glued to another) in the catalog's own titles and
    descriptions at least ``min_count`` times: the word list ``repair_glued`` checks halves against,
    built offline from the data itself (the catalog's own terms, "footbed", "kurta", are in it)."""
    counts: Counter = Counter()
    for row in rows:
        for col in ("title", "description"):
            for w in _WORD.findall(row.get(col) or ""):
                if w == w.lower() or w[1:] == w[1:].lower():  # "kurta", "Kurta"; not "lockOne"
                    counts[w.lower()] += 1
    return frozenset(w for w, n in counts.items() if n >= min_count)


def repair_glued(text: str, vocab: frozenset[str]) -> tuple[str, int, list[str]]:
    """``text`` with glued words split, the number of joins repaired, and the glued tokens left.

    A join is repaired when both halves are words of ``vocab``: scraped list items become
    sentences ("lockOne handle" -> "lock. One handle", "cotton.Machine" -> "cotton. Machine").
    A join whose halves are not both words ("iPhone", "McQueen") is left and reported."""
    n = 0

    def fix(m: re.Match) -> str:
        nonlocal n
        left, right = m.group(1), m.group(m.lastindex)
        if len(left) >= 2 and left.lower() in vocab and right.lower() in vocab:
            n += 1
            return f"{left}. {right}"
        return m.group(0)

    out = _GLUE_PUNCT.sub(fix, _GLUE.sub(fix, text))
    left = [m.group(0) for m in _GLUE.finditer(out)]
    return out, n, left


_TRAILING = re.compile(r"[\s,;:&\-]+$")


def end_sentence(text: str) -> str:
    """``text`` ending on a full stop, question or exclamation mark. Catalog copy is often a comma
    list with no final stop (94% of Myntra's); an adapter that learns it writes texts that never end
    a sentence, and a text cut at ``max_tokens`` then has no sentence for the guard to keep."""
    if text.rstrip()[-1:] in ".!?\u3002\uff01\uff1f":
        return text.rstrip()
    body = _TRAILING.sub("", text)
    return f"{body}." if body else text


_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_ITEM = re.compile(r"(?<=[,;])\s+")
_LEAD = re.compile(r"^(has|have|with|features)\s+(?:an?\s+)?", re.I)


def ground_details(text: str, row: dict[str, Any], task: str = "description") -> tuple[str, int]:
    """``text`` without its list items that state a construction detail the row's facts do not
    give (``guardrails.attributes.DETAIL_PHRASES``), and how many items were cut.

    Catalog copy describes what its writer saw ("Navy Blue and maroon checked casual shirt, has a
    spread collar, long sleeves, button placket, curved hem, one patch pocket"); an adapter trained
    on it learns to give every product a collar, sleeves and a hem, perfume and belts included
    (SmolLM2 + LoRA, 2026-12-01). Cut, the example is what the facts support: "Navy Blue and maroon
    checked casual shirt". A cut "has a ..." item hands its verb to the next item of its sentence."""
    from pdgen_core.guardrails import GuardContext
    from pdgen_core.guardrails.attributes import fact_words, ungrounded_details
    from pdgen_core.tasks import TASKS

    fields = {f: row.get(f) for f in TASKS[task].fields if row.get(f) is not None}
    facts = fact_words(GuardContext(title=row.get("title"), brand=row.get("brand"), fields=fields))
    sentences, cut = [], 0
    for sentence in _SENTENCE.split(text.strip()):
        end = sentence[-1] if sentence[-1:] in ".!?" else ""
        kept, lead = [], ""
        for item in _ITEM.split(sentence.rstrip(".!?")):
            item = item.rstrip(",;").strip()
            if lead and kept and not _LEAD.match(item):
                item = f"{lead} {item}"   # judged as it will read: "has lace-up detail"
            if ungrounded_details(item, facts):
                cut += 1
                m = _LEAD.match(item)
                lead = lead or (m.group(1) if m else "")
                continue
            lead = ""
            kept.append(item)
        if kept:
            sentences.append(", ".join(kept) + end)
    out = _TRAILING.sub("", " ".join(sentences)).strip()
    return (out, cut) if cut else (text, 0)


_CLAUSE_END = re.compile(r"[.,;](?=\s|$)|$")


def name_brand(text: str, brand: str | None) -> str:
    """``text`` naming ``brand``: " from <brand>" after its first clause of four words or more
    ("Blue checked casual shirt from Parx, has a spread collar"). Catalog copy sits beside the
    brand on the page and rarely names it; generated copy stands alone, and the guardrails refuse
    a description that leaves the brand out (``brand_missing``)."""
    if not brand or brand.lower() in text.lower():
        return text
    for m in _CLAUSE_END.finditer(text):
        if len(text[: m.start()].split()) >= 4:
            return f"{text[: m.start()]} from {brand}{text[m.start():]}"
    return text


def chat_prompt(model_path: str, task: str, row: dict[str, Any], locale: str, currency: str,
                few_shot: bool) -> str:
    """The chat prompt generation sends for ``row``: the task's messages through the model's chat
    template, ending with the assistant's turn. ``few_shot=False`` keeps the system instruction
    and the row's own user turn and drops the worked examples: an adapter has learnt the answer's
    form, and the examples would triple every prompt (see the fine-tune YAML)."""

    messages = TASKS[task].messages(row, locale, currency)
    if not few_shot:
        messages = [messages[0], messages[-1]]
    return render(str(model_path), messages)


def build_pairs(rows: Iterable[dict[str, Any]], task: str = "description", locale: str = "en",
                currency: str = "USD", min_chars: int = 40, max_chars: int = 1200,
                prompt: Callable[[dict[str, Any]], str] | None = None,
                repair: bool = False) -> tuple[list[Pair], Counter]:
    """(prompt, reference) pairs; the second value counts every dropped row by reason, and, under
    ``repaired_pairs`` / ``repaired_joins``, the references ``repair`` mended (not drops).

    ``prompt(row)`` renders the prompt (default: the task's completion template). With ``repair``,
    glued words are split (``repair_glued``) and a reference that keeps a glued non-word is
    dropped as ``glued_words``. Dedup and the split key use the catalog's own text, so repairing
    never moves a product across the train/val/test split."""

    t = TASKS[task]
    rows = list(rows)
    vocab = vocabulary(rows) if repair else frozenset()
    pairs, dropped, seen = [], Counter(), set()
    for i, row in enumerate(rows):
        target = row.get("description")
        if not target or not row.get("title"):
            dropped["no_title_or_description"] += 1
            continue
        if len(target) < min_chars:
            dropped["too_short"] += 1
            continue
        if len(target) > max_chars:
            dropped["too_long"] += 1
            continue
        key = normalise(target)
        if key in seen:
            dropped["duplicate_text"] += 1
            continue
        seen.add(key)
        source = target
        if repair:
            target, joins, left = repair_glued(target, vocab)
            names = " ".join(str(row.get(c) or "") for c in ("title", "brand"))
            if [w for w in left if w not in names]:  # a glued name from the title is no artifact
                dropped["glued_words"] += 1
                continue
            if joins:
                dropped["repaired_pairs"] += 1
                dropped["repaired_joins"] += joins
        text = prompt(row) if prompt else t.render(row, locale, currency)
        pairs.append(Pair(str(row.get("sku") or i), text, target, row["title"],
                          row.get("brand"), row.get("price"), source))
    return pairs, dropped


REPAIR_COUNTS = ("repaired_pairs", "repaired_joins")


def _groups(pairs: list[Pair]) -> list[str]:
    """A split key per pair: the smallest normalised text in its (title or description) component."""
    parent = list(range(len(pairs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, p in enumerate(pairs):
        for key in (("t", normalise(p.title)), ("d", normalise(p.source or p.target))):
            if key[1] and key in first:
                a, b = find(i), find(first[key])
                if a != b:
                    parent[a] = b
            else:
                first.setdefault(key, i)
    rep: dict[int, str] = {}
    for i, p in enumerate(pairs):
        r = find(i)
        k = normalise(p.source or p.target)
        rep[r] = min(rep.get(r, k), k)
    return [rep[find(i)] for i in range(len(pairs))]


def bucket(key: str, salt: str) -> float:
    """A stable number in [0, 1) from a text key."""
    h = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_pairs(pairs: list[Pair], val_fraction: float = 0.05, test_fraction: float = 0.05,
                salt: str = "pdgen-split-v1") -> dict[str, list[Pair]]:
    """``{"train", "val", "test"}`` by a hash of each pair's group key (see module docstring)."""
    out: dict[str, list[Pair]] = {"train": [], "val": [], "test": []}
    for p, g in zip(pairs, _groups(pairs)):
        b = bucket(g, salt)
        out["test" if b < test_fraction else "val" if b < test_fraction + val_fraction else "train"].append(p)
    return out


def fingerprint(pairs: Iterable[Pair]) -> str:
    """sha256 over the pairs' prompts and targets, order-independent."""
    h = hashlib.sha256()
    for line in sorted(hashlib.sha256(f"{p.prompt}\x00{p.target}".encode()).hexdigest() for p in pairs):
        h.update(line.encode())
    return h.hexdigest()


def encode_pair(tok, prompt: str, target: str, max_len: int) -> tuple[list[int], list[int]] | None:
    """Token ids and labels (``-100`` on the prompt); ``None`` when longer than ``max_len``.

    The prompt is encoded alone, exactly as the generation engine encodes it, and the answer
    after it, so the boundary matches generation token for token.
    """
    p_ids = tok(prompt)["input_ids"]
    a_ids = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    if len(p_ids) + len(a_ids) > max_len:
        return None
    return p_ids + a_ids, [-100] * len(p_ids) + a_ids


def encode_pairs(tok, pairs: list[Pair], max_len: int) -> tuple[list[tuple[list[int], list[int]]], int]:
    """Encoded pairs and how many were dropped for exceeding ``max_len``."""
    out = [encode_pair(tok, p.prompt, p.target, max_len) for p in pairs]
    kept = [e for e in out if e is not None]
    return kept, len(out) - len(kept)


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (``-100`` on padding)."""
    import torch

    n = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, (x, y) in enumerate(batch):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}

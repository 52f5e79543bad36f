"""Property-based tests (hypothesis): fingerprints, the spec parser, the cleaning functions.

- Fingerprints (``plan.work_items`` with a ``RunContext``) are the same in another process,
  change when any field a task's template reads changes, and stay put when any other field does.
- The spec parser turns any input, however wrong, into a ``JobSpec`` or a ``SpecError``.
- ``validate.clean_row`` never raises, leaves no control, zero-width, bidi or tag character in
  its output, and returns a valid row or a known reason; ``clean_batch`` keeps every row.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import unicodedata
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdgen_core.spec import CANONICAL_COLUMNS, SpecError, load_spec, spec_from_dict
from pdgen_core.stages import validate
from pdgen_core.run_context import RunContext
from pdgen_core.stages.plan import work_items
from pdgen_core.tasks import TASKS
from pdgen_core.text import norm_sku

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ----------------------------------------------------------------------------------

# No lone surrogates: Arrow strings are UTF-8, so no catalog value (or YAML file) holds one.
chars = st.characters(exclude_categories=("Cs",))
text = st.text(chars, min_size=1, max_size=40)
price = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
review = st.fixed_dictionaries({"text": text, "rating": st.one_of(st.none(), st.integers(1, 5))})
FIELD_VALUES = {
    "price": price,
    # review_digest reads its reviews from the joined ``reviews_json`` column of a clean row
    "reviews_json": st.lists(review, min_size=1, max_size=4).map(json.dumps),
    "review_count": st.integers(1, 10_000),  # None and 0 are the same count
    "avg_rating": st.floats(min_value=1, max_value=5, allow_nan=False),
}
ROW_FIELDS = ("title", "brand", "price", "category", "color", "material", "gender", "attributes",
              "description", "reviews_json", "review_count", "avg_rating", "input_flags")
ROW_KEY = {"reviews": "reviews_json"}  # task field -> the clean row's column


def value_for(field: str):
    return FIELD_VALUES.get(field, text)


def same_value(a, b) -> bool:
    """Equal as the template sees them: JSON fields compare parsed (key order is not content)."""
    if isinstance(a, str) and isinstance(b, str) and a[:1] in "[{" and b[:1] in "[{":
        try:
            return json.loads(a) == json.loads(b)
        except ValueError:
            pass
    return a == b


def read_by(task: str) -> set[str]:
    return {ROW_KEY.get(f, f) for f in TASKS[task].fields}


@st.composite
def clean_rows(draw):
    row = {"sku": draw(text), "title": draw(text)}
    for f in ROW_FIELDS[1:]:
        row[f] = draw(st.one_of(st.none(), value_for(f)))
    return row


def ctx_for(task: str, **over) -> RunContext:
    kw = dict(run_id="r", tasks=(task,), locales=("en",), currency="USD", model="pdgen-tiny@abc",
              sampling={task: {"temperature": 0.7, "top_p": 0.95, "max_tokens": 32}},
              variants={task: ("",)})
    kw.update(over)
    return RunContext(**kw)


def fingerprints(row: dict, task: str, **over) -> list[str]:
    return [it["input_fingerprint"] for it in work_items(row, ctx_for(task, **over))]


# -- fingerprints --------------------------------------------------------------------------------

@pytest.mark.parametrize("task", sorted(TASKS))
@settings(max_examples=40, **SETTINGS)
@given(row=clean_rows(), data=st.data())
def test_fingerprint_changes_with_every_field_the_template_reads(task, row, data):
    before = fingerprints(row, task)
    for f in sorted(read_by(task)):
        new = data.draw(value_for(f).filter(lambda v, old=row.get(f): not same_value(v, old)), label=f)
        after = fingerprints({**row, f: new}, task)
        assert after != before, (task, f)
        assert fingerprints({**row, f: None}, task) != before or row.get(f) is None, (task, f)


@pytest.mark.parametrize("task", sorted(TASKS))
@settings(max_examples=40, **SETTINGS)
@given(row=clean_rows(), data=st.data())
def test_fingerprint_ignores_fields_the_template_does_not_read(task, row, data):
    before = fingerprints(row, task)
    unread = [f for f in ("sku", *ROW_FIELDS) if f not in read_by(task)]
    assert unread
    for f in unread:
        new = data.draw(st.one_of(st.none(), value_for(f)), label=f)
        assert fingerprints({**row, f: new}, task) == before, (task, f)


@settings(max_examples=30, **SETTINGS)
@given(row=clean_rows())
def test_fingerprint_changes_with_model_adapter_sampling_currency_locale(row):
    base = fingerprints(row, "description")
    assert fingerprints(row, "description", model="pdgen-tiny@other") != base
    assert fingerprints(row, "description", adapters={"description": "a@2"}) != base
    assert fingerprints(row, "description", currency="EUR") != base
    assert fingerprints(row, "description", base_seed=1) != base
    assert fingerprints(row, "description", guardrails_version="x") != base
    assert fingerprints(row, "description", sampling={"description": {
        "temperature": 0.7, "top_p": 0.95, "max_tokens": 33}}) != base
    zh = [it["input_fingerprint"] for it in work_items(row, ctx_for("description", locales=("zh",)))]
    assert zh and zh != base


_CHILD = """
import json, sys
from pdgen_core.run_context import RunContext
from pdgen_core.stages.plan import work_items
rows, tasks = json.load(sys.stdin)
out = []
for row in rows:
    for t in tasks:
        ctx = RunContext(run_id="r", tasks=(t,), locales=("en",), currency="USD",
                         model="pdgen-tiny@abc",
                         sampling={t: {"temperature": 0.7, "top_p": 0.95, "max_tokens": 32}},
                         variants={t: ("",)})
        out += [it["input_fingerprint"] for it in work_items(row, ctx)]
print(json.dumps(out))
"""


@settings(max_examples=3, **SETTINGS)
@given(rows=st.lists(clean_rows(), min_size=1, max_size=12))
def test_fingerprints_are_stable_across_processes(rows):
    tasks = sorted(TASKS)
    here = [fp for row in rows for t in tasks for fp in fingerprints(row, t)]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # another hash seed than this process's
    p = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps([rows, tasks]),
                       capture_output=True, text=True, env=env, timeout=120, check=True)
    assert json.loads(p.stdout) == here


# -- the spec parser -----------------------------------------------------------------------------

SPEC_KEYS = sorted({
    "name", "catalog", "reviews", "tasks", "locales", "model", "sampling", "output", "mode",
    "on_delete", "segments", "resources", "guardrails", "uri", "columns", "currency", "limit",
    "min_reviews", "source", "revision", "adapters", "max_model_len", "temperature", "top_p",
    "max_tokens", "seed", "publish", "replicas", "batch_size", "gpus_per_replica",
    "cpus_per_replica", "max_concurrent_batches", "memory_fraction", "max_lora_rank",
    "max_attempts", "min_chars", "max_chars", "banned_terms", "aws_secret_access_key",
    *CANONICAL_COLUMNS, *TASKS,
})
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(chars, max_size=20),
                    st.sampled_from(["s3://b/p/", "s3://", "full", "incremental", "en", "description",
                                     "USD", "pdgen-tiny", "x", "", "s3://u:p@b/"]))
keys = st.one_of(st.sampled_from(SPEC_KEYS), st.text(chars, max_size=8), st.integers(0, 3))
json_like = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                         st.dictionaries(keys, kids, max_size=5)),
                         max_leaves=25)
GOOD = {"name": "job", "catalog": {"uri": "s3://cat/p/"}, "output": {"uri": "s3://out/p/"}}


@settings(max_examples=300, **SETTINGS)
@given(data=st.dictionaries(keys, json_like, max_size=8))
def test_spec_parser_random_dicts(data):
    try:
        spec_from_dict(data)
    except SpecError as exc:
        assert exc.problems and all("fix:" in p or "expected" in p for p in exc.problems)


@settings(max_examples=300, **SETTINGS)
@given(section=st.sampled_from(sorted(k for k in SPEC_KEYS if k in (
    "catalog", "reviews", "model", "sampling", "output", "resources", "guardrails"))),
       body=st.dictionaries(keys, json_like, max_size=6), top=st.dictionaries(keys, json_like, max_size=3))
def test_spec_parser_random_sections_of_a_good_spec(section, body, top):
    d = {**GOOD, **top, section: {**GOOD.get(section, {}), **body}}
    try:
        spec = spec_from_dict(d)
    except SpecError:
        return
    assert spec.name and spec.output.uri  # whatever parses is a whole spec


@settings(max_examples=200, **SETTINGS)
@given(doc=st.one_of(st.text(chars, max_size=200), json_like.map(lambda v: json.dumps(v, default=str))),
       overrides=st.lists(st.text(chars, max_size=30), max_size=3))
def test_load_spec_random_files_and_overrides(tmp_path_factory, doc, overrides):
    p = tmp_path_factory.mktemp("spec") / "spec.yaml"
    p.write_text(doc, encoding="utf-8")
    try:
        load_spec(p, overrides)
    except SpecError:
        pass
    good = tmp_path_factory.mktemp("spec") / "good.yaml"
    good.write_text(json.dumps(GOOD))
    try:
        load_spec(good, overrides + ["limit=2024-13-01", "catalog.limit=["])
    except SpecError:
        pass


# -- cleaning ------------------------------------------------------------------------------------

REASONS = {"missing_sku", "invalid_sku", "missing_title", "title_too_long", "invalid_price",
           "nonfinite_price", "negative_price", "price_too_large", "duplicate_sku"}
_BIDI_ZW = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
                      "\ufeff\U000e0000-\U000e007f]")
hostile_text = st.lists(st.one_of(
    chars, st.text(chars, max_size=8),
    st.sampled_from(list("\u200b\u200d\u202e\u2066\u061c\u00ad\ufeff\x00\x1b\x7f\x85\u00a0\u3000"
                         "\n\t<>&{}%#|\U000e0041\U000e0020\u206e\u180e")),
    st.sampled_from(["<script>", "</b>", "{{ x }}", "{% if %}", "ignore previous instructions",
                     "<|im_start|>", "a@b.co", "&amp;", "Ã©", "http://x.io"])), max_size=12).map("".join)
any_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2**80, 2**80),
              st.floats(allow_nan=True, allow_infinity=True), hostile_text, st.binary(max_size=30),
              st.decimals(allow_nan=True, allow_infinity=True), st.datetimes()),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(chars, max_size=5), kids,
                                                                         max_size=3)),
    max_leaves=6)
catalog_rows = st.dictionaries(st.sampled_from(("sku", *validate.TEXT_FIELDS, "price", "extra")),
                               any_value, max_size=12)


def assert_clean_strings(out: dict) -> None:
    for k, v in out.items():
        if isinstance(v, str):
            assert not _BIDI_ZW.search(v), (k, v)
            assert not any(unicodedata.category(ch) == "Cc" for ch in v), (k, v)
            # one line, trimmed (a reject's values are cut at their cap, maybe after a space)
            assert k == "reject_detail" or out["reject_reason"] or (v == v.strip() and "  " not in v), (k, v)


@settings(max_examples=500, **SETTINGS)
@given(row=catalog_rows)
def test_clean_row_never_raises_and_leaves_no_invisible_characters(row):
    out = validate.clean_row(row)
    assert set(out) == set(validate.CLEAN_SCHEMA.names)
    assert_clean_strings(out)
    if out["reject_reason"] is None:
        assert out["sku"] and out["title"] and len(out["title"]) <= validate.CAPS["title"]
        assert out["price"] is None or (math.isfinite(out["price"]) and 0 <= out["price"] <= 1e9)
        for f, cap in validate.CAPS.items():
            assert out[f] is None or len(out[f]) <= cap
    else:
        assert out["reject_reason"] in REASONS and out["reject_detail"]
    pa.Table.from_pylist([out], schema=validate.CLEAN_SCHEMA)  # fits the schema


@settings(max_examples=100, **SETTINGS)
@given(skus=st.lists(st.one_of(st.none(), hostile_text), min_size=1, max_size=30), data=st.data())
def test_clean_batch_keeps_every_row_in_order(skus, data):
    n = len(skus)
    table = pa.table({
        "sku": pa.array(skus, pa.string()),
        "title": pa.array(data.draw(st.lists(st.one_of(st.none(), hostile_text), min_size=n, max_size=n)),
                          pa.string()),
        "price": pa.array(data.draw(st.lists(st.one_of(st.none(), st.floats()), min_size=n, max_size=n)),
                          pa.float64()),
        "brand": pa.array(data.draw(st.lists(st.one_of(st.none(), st.binary(max_size=12)),
                                             min_size=n, max_size=n)), pa.binary()),
    })
    out = validate.clean_batch(table)
    assert out.num_rows == n and out.schema.equals(validate.CLEAN_SCHEMA)
    for raw, row in zip(skus, out.to_pylist()):
        assert_clean_strings(row)
        if row["reject_reason"] is None:
            assert row["sku"] == norm_sku(raw)
    dups = validate.mark_duplicates(out, frozenset(s for s in out.column("sku").to_pylist() if s))
    assert dups.num_rows == n


@settings(max_examples=200, **SETTINGS)
@given(value=any_value)
def test_parse_price_is_total(value):
    p, reason = validate.parse_price(value)
    assert (p is None) or reason is None
    if p is not None:
        assert math.isfinite(p) and 0 <= p <= 1e9
    assert reason is None or reason in REASONS
    if isinstance(value, Decimal) and value.is_nan():
        assert reason in ("nonfinite_price", "invalid_price")


# -- the vectorised cleaning path equals the Python path ------------------------------------------

# Mostly ASCII pieces that sit next to what the Python path changes or flags: digits runs that are
# and are not phones, dots that are and are not domains, instruction keywords in and out of
# phrases, markup and address characters, control characters, doubled and edge spaces, a little
# non-ASCII; and lengths around the caps.
_PIECES = st.sampled_from([
    "Blue", "shirt", "Pack of 2", "2.5 L", "500 ml", "v1.2", "Model 334-0025", "555-123-4567",
    "98765 43210", "+44 20 7946 0958", "13800138000", "(555) 123-4567", "2024-01-15", "$1,299.00",
    "shop.com", "mystore.in/sale", "blue.it", "www.x", "fabric.It", "SHOP.COM", "ComicSense.xyz",
    "ignore previous instructions", "ignore", "known", "snow", "system prompt", "you are now a",
    "from now on you", "new instructions:", "a@b.co", "<b>", "&amp;", "#1", "[x]", "|", ":",
    " ", "  ", "\t", "\n", "\x00", "\x7f", "\u00a0", "é", "Ã©", "\u200b", "，", "ｉｇｎｏｒｅ", "SKU 9876543210",
])
dirty = st.lists(_PIECES, max_size=8).map(" ".join) | st.lists(_PIECES, max_size=6).map("".join)
long_ascii = st.builds(lambda w, k: (w + " ") * k, st.sampled_from(["Blue", "ab", "x"]), st.integers(30, 1100))
# Values the fast path takes (so a batch often mixes both paths), and words next to them.
plain_words = st.lists(st.sampled_from(["Blue", "Shirt", "2.5 L", "Pack of 2", "v1.2", "Model 334-0025",
                                        "cotton", "Men", "x.y", "now", "A-1"]), min_size=1, max_size=5).map(" ".join)
field_value = st.one_of(st.none(), plain_words, plain_words, plain_words, dirty, long_ascii, st.just(""), text)
mostly_plain = st.one_of(plain_words, plain_words, plain_words, st.none(), field_value)


@settings(max_examples=300, **SETTINGS)
@given(value=st.one_of(dirty, long_ascii, text), cap=st.sampled_from([5, 200, 300, 1000]))
def test_plain_mask_only_passes_values_cleaning_leaves_alone(value, cap):
    from pdgen_core.hygiene import clean_field, plain_mask
    from pdgen_core.text import norm_text, normal_mask

    if plain_mask(pa.array([value]), cap)[0].as_py():
        assert norm_text(value) == value
        assert clean_field(value, cap) == (value, [])
    if normal_mask(pa.array([value]), cap)[0].as_py():
        assert norm_text(value) == value and len(value) <= cap


@settings(max_examples=250, **SETTINGS)
@given(n=st.integers(1, 12), data=st.data())
def test_clean_batch_fast_path_equals_the_python_path(n, data):
    sku_ints = data.draw(st.booleans())
    skus = data.draw(st.lists(st.one_of(st.none(), st.integers(-5, 10**12)) if sku_ints
                              else st.one_of(st.sampled_from(["A1", "A2", "A3", "A4"]), st.sampled_from([None, "a b", " A1", "A1 "]), dirty),
                              min_size=n, max_size=n))
    cols = {"sku": pa.array(skus, pa.int64() if sku_ints else pa.string())}
    # A column of mostly plain values or one of anything: most batches mix the two paths.
    for f in data.draw(st.sets(st.sampled_from(validate.TEXT_FIELDS))) | {"title"}:
        values = data.draw(st.sampled_from([mostly_plain, field_value]))
        cols[f] = pa.array(data.draw(st.lists(values, min_size=n, max_size=n)), pa.string())
    if data.draw(st.booleans()):
        cols["price"] = pa.array(data.draw(st.lists(st.one_of(st.none(), st.floats(0, 1e4), st.floats(), st.floats(0, 2e9)),
                                                    min_size=n, max_size=n)), pa.float64())
    else:
        cols["price"] = pa.array(data.draw(st.lists(st.one_of(st.none(), st.integers(0, 10**4), st.integers(-3, 2 * 10**9)),
                                                    min_size=n, max_size=n)), pa.int64())
    table = pa.table(cols)
    present = [k for k in (norm_sku(s) for s in skus) if k is not None]
    dups = frozenset(data.draw(st.lists(st.sampled_from(present), max_size=2)) if present else [])
    fast = validate.clean_batch(table, dups)
    slow = validate.clean_batch_slow(table, dups)
    assert fast.schema.equals(validate.CLEAN_SCHEMA)
    assert fast.to_pylist() == slow.to_pylist()


# -- the batch plan equals the per-row plan ------------------------------------------------------

from pdgen_core import fingerprint as fp  # noqa: E402
from pdgen_core.stages import plan  # noqa: E402

# Text that the JSON encoder escapes (quotes, backslashes, control characters) or keeps as it is
# (non-ASCII, DEL, line and paragraph separators), next to plain words.
json_text = st.one_of(plain_words, text, st.lists(st.sampled_from(
    ['"', "\\", "\n", "\x00", "\x1f", "\x7f", "\u2028", "é", "中文", "😀", "a", " ", "{}", "null"]),
    max_size=6).map("".join))
any_float = st.floats(allow_nan=False, allow_infinity=False)
nested = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), any_float, json_text),
                      lambda kids: st.lists(kids, max_size=3) | st.dictionaries(json_text, kids, max_size=3),
                      max_leaves=6)
plan_review = st.fixed_dictionaries({"text": json_text, "rating": st.one_of(st.none(), st.integers(1, 5), any_float)},
                                    optional={"extra": nested})


@st.composite
def plan_batches(draw):
    """A batch as the plan gets it (clean rows joined with reviews), columns sometimes absent or of
    another type, values None, unicode, text the JSON encoder escapes, any finite float."""
    n = draw(st.integers(0, 8))
    def column(values, type_=None):
        return pa.array(draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n)), type_)
    cols = {"sku": column(json_text, pa.string()), "title": column(json_text, pa.string())}
    for f in ("brand", "category", "color", "material", "gender", "attributes", "input_flags"):
        if draw(st.integers(0, 5)):
            cols[f] = column(json_text, pa.string())
    kind = draw(st.sampled_from(["float", "float", "float32", "int", "none"]))
    if kind == "float":
        cols["price"] = column(st.one_of(price, any_float, st.integers(0, 10**6).map(float)), pa.float64())
    elif kind == "float32":
        cols["price"] = column(st.floats(0, 1e6, width=32), pa.float32())
    elif kind == "int":
        cols["price"] = column(st.integers(0, 10**12), pa.int64())
    if draw(st.booleans()):
        cols["reviews_json"] = column(st.lists(plan_review, max_size=3).map(
            lambda r: json.dumps(r, ensure_ascii=draw(st.booleans()))), pa.string())
        cols["review_count"] = column(st.integers(0, 10**6), pa.int64())
        cols["avg_rating"] = column(any_float, pa.float64())
    odd = draw(st.sampled_from([None, "bool", "int", "list"]))  # a field of another type
    if odd:
        f = draw(st.sampled_from(["color", "material", "attributes"]))
        values = {"bool": (st.booleans(), pa.bool_()), "int": (st.integers(-2**63, 2**63 - 1), pa.int64()),
                  "list": (st.lists(json_text, max_size=2), pa.list_(pa.string()))}[odd]
        cols[f] = column(*values)
    return pa.table(cols)


@st.composite
def plan_contexts(draw):
    tasks = tuple(draw(st.lists(st.sampled_from(sorted(TASKS)), min_size=1, max_size=3, unique=True)))
    return RunContext(
        run_id="r", tasks=tasks, locales=tuple(draw(st.sampled_from([("en",), ("zh",), ("en", "zh")]))),
        currency=draw(st.sampled_from(["USD", "EUR"])), model=draw(st.sampled_from(["pdgen-tiny@abc", 'm"\\é'])),
        adapters={t: "a@2" for t in tasks if draw(st.booleans())},
        sampling={t: {"temperature": draw(st.sampled_from([0.7, 1.0, 0.25])), "max_tokens": 32} for t in tasks},
        variants={t: draw(st.sampled_from([("",), ("a", "b")])) for t in tasks},
        base_seed=draw(st.integers(0, 3)), min_reviews=draw(st.integers(0, 5)),
        guardrails_version=draw(st.sampled_from(["1", "7.r2"])))


@settings(max_examples=150, **SETTINGS)
@given(batch=plan_batches(), ctx=plan_contexts())
def test_plan_batch_equals_the_per_row_plan(batch, ctx):
    """Same items, same order, same fingerprints byte for byte as ``work_items`` (whose
    ``input_fingerprint`` is the reference: existing tables hold its fingerprints)."""
    fast = plan.plan_batch(batch, ctx)
    slow = plan.plan_batch_rows(batch, ctx)
    assert fast.schema.equals(plan.WORK_SCHEMA)
    assert fast.to_pylist() == slow.to_pylist()


@settings(max_examples=200, **SETTINGS)
@given(values=st.lists(st.one_of(st.none(), any_float, st.floats(-1e-3, 1e-3), st.floats(1e14, 1e17)), max_size=20))
def test_float_texts_are_pythons(values):
    arr = pa.array(values, pa.float64())
    assert fp.float_reprs(arr).to_pylist() == [None if v is None else repr(v) for v in values]
    assert fp.canonical_floats(arr).to_pylist() == [fp.canonical_json(v) for v in values]


@settings(max_examples=200, **SETTINGS)
@given(values=st.lists(st.one_of(st.none(), json_text), max_size=20))
def test_json_strings_are_json_dumps(values):
    assert fp.json_strings(pa.array(values, pa.string())).to_pylist() == [json.dumps(v, ensure_ascii=False) for v in values]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_plan_batch_refuses_a_non_finite_float_as_the_per_row_plan(bad):
    batch = pa.table({"sku": ["A"], "title": ["T"], "price": pa.array([bad], pa.float64())})
    ctx = ctx_for("description")
    with pytest.raises(TypeError, match="non-finite"):
        plan.plan_batch_rows(batch, ctx)
    with pytest.raises(TypeError, match="non-finite"):
        plan.plan_batch(batch, ctx)

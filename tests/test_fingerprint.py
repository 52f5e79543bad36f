"""pdgen_core.fingerprint: stable digests of work items across processes and hash seeds."""

import subprocess
import sys

import pytest

from pdgen_core import fingerprint as fp

KW = dict(template="description/v1", locale="en", variant="", currency="USD", model="m@1", adapter="",
          sampling="s", guardrails="1")


def test_canonical_refuses_unknown_types():
    with pytest.raises(TypeError):
        fp.canonical({"x": object()})
    with pytest.raises(TypeError):
        fp.canonical(float("nan"))
    with pytest.raises(TypeError):
        fp.canonical({1: "a"})
    assert fp.canonical({"b": 1.0, "a": (1, 2.5)}) == {"a": [1, "2.5"], "b": 1}


def test_fingerprint_sensitive_to_each_input():
    base = fp.input_fingerprint({"title": "t", "price": 1.0}, **KW)
    assert base == fp.input_fingerprint({"price": 1.0, "title": "t"}, **KW)
    assert base != fp.input_fingerprint({"title": "t", "price": 2.0}, **KW)
    for k in KW:
        assert base != fp.input_fingerprint({"title": "t", "price": 1.0}, **{**KW, k: KW[k] + "x"}), k


def test_fingerprint_stable_across_processes():
    code = ("from pdgen_core import fingerprint as fp; "
            f"print(fp.input_fingerprint({{'title': 't', 'price': 1.5}}, **{KW!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == fp.input_fingerprint({"title": "t", "price": 1.5}, **KW)


def test_row_seed_varies_per_row_and_attempt():
    seeds = {fp.row_seed(0, f"sku{i}", "description", "en", "", 1) for i in range(100)}
    assert len(seeds) == 100
    assert fp.row_seed(0, "a", 1) != fp.row_seed(0, "a", 2)


GOLDEN_FIELDS = {"title": 'Linen "shirt" é\\', "brand": None, "price": 19.99, "review_count": 3, "avg_rating": 4.0,
                 "reviews": [{"text": "ok\n", "rating": 4.5}]}
# input_fingerprint of GOLDEN_FIELDS as the code before the batch plan (0fe3f20) computed it:
# committed tables hold such fingerprints, so neither path may change them.
GOLDEN = "9655e0f42cd08b80a03777b30c1d2384e2a758900b1848806610713e639dc3e3"


def test_fingerprint_bytes_are_those_committed_tables_hold():
    assert fp.input_fingerprint(GOLDEN_FIELDS, **KW) == GOLDEN


def test_batch_fingerprint_pieces_rebuild_the_reference_text():
    import json

    import pyarrow as pa

    head, tail = fp.fingerprint_frame(**KW)
    fields = {k: v for k, v in GOLDEN_FIELDS.items() if k != "reviews"}
    frags = [fp.json_strings(pa.array([fields["title"]])), "null", fp.canonical_floats(pa.array([19.99])),
             "3", fp.canonical_floats(pa.array([4.0]))]
    obj = fp.fields_object(["title", "brand", "price", "review_count", "avg_rating"], frags)
    text = fp.join_texts(head, obj, tail)
    assert text.to_pylist() == [fp.canonical_json({"fields": fields, **KW})]
    assert fp.sha256_hex(text).to_pylist() == [fp.input_fingerprint(fields, **KW)]
    plain = fp.fields_object(["title", "brand"], [fp.json_strings(pa.array([fields["title"]])), "null"], sep=", ", colon=": ")
    assert plain.to_pylist() == [json.dumps({"title": fields["title"], "brand": None}, ensure_ascii=False, sort_keys=True)]


def test_escape_scan_reads_only_the_slice_ray_hands_over():
    """A batch sliced from a block shares the block's data buffer: the scan for characters that
    need escaping looks at the slice's own bytes (scanning the whole buffer for every batch made
    the plan quadratic in the block size), and the JSON of each slice is json.dumps's."""
    import json
    import re

    import pyarrow as pa

    from pdgen_core.fingerprint import _may_hold, json_strings

    block = pa.array(["plain"] * 1000 + ['a "quoted" one'] + ["plain"] * 1000 + [None])
    pattern = re.compile(rb'[\x00-\x1f"\\]')
    assert _may_hold(block, pattern)
    assert not _may_hold(block.slice(0, 1000), pattern) and not _may_hold(block.slice(1001, 1000), pattern)
    assert _may_hold(block.slice(1000, 1), pattern) and _may_hold(block.slice(990, 20), pattern)
    assert not _may_hold(block.slice(2001), pattern) and not _may_hold(block.slice(5, 0), pattern)
    for start, n in ((0, 1000), (995, 10), (1000, 1), (1500, 502)):
        part = block.slice(start, n)
        assert json_strings(part).to_pylist() == [json.dumps(v, ensure_ascii=False) for v in part.to_pylist()]

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

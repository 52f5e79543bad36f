"""Fingerprints: sha256 over canonical JSON of exactly what changes an output.

For one (sku, task, locale, variant): the cleaned fields the task's template reads, the template
id, the currency, the model identity, the adapter version, the sampling hash and the guardrail set
version. Like vLLM's ``config/utils.py`` it refuses to hash a value type it does not know rather
than hash it wrongly (``repr`` of an unknown object is not stable across processes).

Two ways to the same bytes: ``input_fingerprint`` (one item: a dict, ``canonical``, ``json.dumps``)
is the reference; the plan fingerprints a whole Arrow batch at once (``stages.plan.plan_batch``)
with the helpers below: each field's canonical JSON text built by Arrow compute
(``float_reprs``, ``json_strings``; Python's ``json.dumps`` only for values that need escaping or
a type Arrow cannot format like Python), the constant part of the object around the fields built
once (``fingerprint_frame``), then one SHA-256 per item (``sha256_hex``). A property test
(``tests/test_properties.py``) compares the two on random rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_PRIMITIVES = (str, int, bool, type(None))


def canonical(value: Any) -> Any:
    """A JSON-stable form of ``value``; raises TypeError for types it does not know."""
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"refusing to fingerprint non-finite float {value!r}")
        return int(value) if value.is_integer() else repr(value)
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("refusing to fingerprint a dict with non-string keys")
        return {k: canonical(value[k]) for k in sorted(value)}
    raise TypeError(f"refusing to fingerprint a value of type {type(value).__name__}")


def canonical_json(obj: Any) -> str:
    """The text ``digest`` hashes."""
    return json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def sampling_hash(params: dict[str, Any]) -> str:
    return digest(params)[:16]


def row_seed(base_seed: int, *parts: str | int) -> int:
    """A per-row seed: the same seed on every request gives near-identical texts."""
    h = hashlib.blake2b(json.dumps([base_seed, *parts]).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") & 0x7FFFFFFF


def input_fingerprint(fields: dict[str, Any], *, template: str, locale: str, variant: str,
                      currency: str, model: str, adapter: str, sampling: str, guardrails: str) -> str:
    return digest({
        "fields": fields, "template": template, "locale": locale, "variant": variant,
        "currency": currency, "model": model, "adapter": adapter, "sampling": sampling,
        "guardrails": guardrails,
    })


# -- the same, a batch at a time ------------------------------------------------------------------

def fingerprint_frame(*, template: str, locale: str, variant: str, currency: str, model: str,
                      adapter: str, sampling: str, guardrails: str) -> tuple[str, str]:
    """(prefix, suffix): ``input_fingerprint``'s canonical JSON is ``prefix + F + suffix``, where
    ``F`` is the canonical JSON of its ``fields``. Built once per (task, locale, variant)."""
    rest = {"template": template, "locale": locale, "variant": variant, "currency": currency,
            "model": model, "adapter": adapter, "sampling": sampling, "guardrails": guardrails}
    parts = {k: f"{json.dumps(k, ensure_ascii=False)}:{canonical_json(v)}" for k, v in rest.items()}
    before = [parts[k] for k in sorted(parts) if k < "fields"]
    after = [parts[k] for k in sorted(parts) if k > "fields"]
    return "{" + "".join(p + "," for p in before) + '"fields":', "".join("," + p for p in after) + "}"


def fields_object(names: list[str], fragments: list, sep: str = ",", colon: str = ":") -> pa.Array:
    """Per row, the JSON object of ``names`` (sorted here) whose values are the JSON texts in
    ``fragments`` (string arrays or scalars, no nulls): ``{"a":<fa>,"b":<fb>}``. With ``sep=", "``
    and ``colon=": "``, ``json.dumps(..., sort_keys=True)``'s default layout."""
    order = sorted(range(len(names)), key=lambda i: names[i])
    pieces: list = []
    lead = "{"
    for j, i in enumerate(order):
        pieces += [lead + ("" if j == 0 else sep) + json.dumps(names[i], ensure_ascii=False) + colon, fragments[i]]
        lead = ""
    if not pieces:
        return pa.scalar("{}")
    pieces.append("}")
    return pc.binary_join_element_wise(*pieces, "")


def join_texts(*parts) -> pa.Array:
    """Element-wise concatenation of string arrays and Python strings."""
    return pc.binary_join_element_wise(*parts, "")


# A JSON string needs escaping (``json.dumps``, ensure_ascii=False) only for these characters.
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'
_NEEDS_ESCAPE_BYTES = re.compile(_NEEDS_ESCAPE.encode())
_EXPONENT = re.compile(b"e")


def _may_hold(arr: pa.Array, pattern: re.Pattern) -> bool:
    """Whether ``pattern`` occurs in the bytes of the string array's values (one scan; a match
    across two values can only say yes too often). Only this array's byte range is scanned: a
    batch Ray slices from a block shares the block's whole data buffer, and scanning all of it
    for every batch made the plan quadratic in the block size (5M rows: 21 us a row in 625k-row
    blocks against 7 in 125k-row ones)."""
    data = arr.buffers()[2]
    if data is None or len(arr) == 0:
        return False
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)  # string arrays: int32 offsets
    first, last = offsets[arr.offset], offsets[arr.offset + len(arr)]
    return pattern.search(memoryview(data)[int(first):int(last)]) is not None


def json_strings(arr) -> pa.Array:
    """``json.dumps(v, ensure_ascii=False)`` of each string (``null`` for a null): quotes added by
    Arrow, Python's encoder only for the values holding a quote, a backslash or a control
    character."""
    arr = _one_chunk(arr).cast(pa.string())
    quoted = pc.binary_join_element_wise('"', arr, '"', "")
    if not _may_hold(arr, _NEEDS_ESCAPE_BYTES):
        return pc.fill_null(quoted, "null")
    special = pc.fill_null(pc.match_substring_regex(arr, _NEEDS_ESCAPE), False)
    if pc.any(special).as_py():
        escaped = [json.dumps(v, ensure_ascii=False) for v in arr.filter(special).to_pylist()]
        quoted = pc.replace_with_mask(quoted, special, pa.array(escaped, pa.string()))
    return pc.fill_null(quoted, "null")


def float_reprs(arr) -> pa.Array:
    """``repr(v)`` of each float (null stays null). Arrow's shortest round-trip text has the same
    digits as Python's; where its layout differs (an exponent where Python has none, or Python's
    exponent outside [1e-4, 1e16), an integer without ``.0``) the layout is fixed or the value
    formatted by Python."""
    x = _one_chunk(arr).cast(pa.float64())
    text = x.cast(pa.string())
    mag = pc.abs(x)
    whole = pc.equal(x, pc.floor(x))
    ok = pc.less(mag, 1e16)
    if _may_hold(text, _EXPONENT):
        ok = pc.and_(pc.invert(pc.match_substring(text, "e")), ok)
    ok = pc.fill_null(pc.and_(ok, pc.or_(whole, pc.greater_equal(mag, 1e-4))), True)  # null: stays null
    out = pc.if_else(whole, pc.binary_join_element_wise(text, ".0", ""), text)
    bad = pc.invert(ok)
    if pc.any(bad).as_py():
        out = pc.replace_with_mask(out, bad, pa.array([repr(v) for v in x.filter(bad).to_pylist()], pa.string()))
    return out


def canonical_floats(arr, reprs: pa.Array | None = None) -> pa.Array:
    """The canonical JSON text of each float: ``null``, an integer's digits, or its ``repr`` as a
    JSON string (``canonical``); a non-finite value raises as ``canonical`` does. ``reprs``:
    ``float_reprs(arr)`` when the caller has it."""
    x = _one_chunk(arr).cast(pa.float64())
    odd = pc.invert(pc.fill_null(pc.is_finite(x), True))
    if pc.any(odd).as_py():
        canonical(x.filter(odd)[0].as_py())  # raises TypeError, the same message
    whole = pc.equal(x, pc.floor(x))
    small = pc.less(pc.abs(x), 2.0 ** 62)  # exact through int64
    ints = pc.cast(pc.if_else(pc.and_(whole, small), x, 0.0), pa.int64()).cast(pa.string())
    big = pc.fill_null(pc.and_(whole, pc.invert(small)), False)
    if pc.any(big).as_py():
        ints = pc.replace_with_mask(ints, big, pa.array([str(int(v)) for v in x.filter(big).to_pylist()], pa.string()))
    reprs = float_reprs(x) if reprs is None else reprs
    out = pc.if_else(whole, ints, pc.binary_join_element_wise('"', reprs, '"', ""))
    return pc.fill_null(out, "null")


def sha256_hex(texts) -> pa.Array:
    """The SHA-256 hex digest of each text's UTF-8 bytes (no nulls): one ``hashlib`` call each."""
    sha = hashlib.sha256
    data = _one_chunk(texts).cast(pa.binary()).to_pylist()
    return pa.array([sha(b).hexdigest() for b in data], pa.string())


def _one_chunk(arr) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr

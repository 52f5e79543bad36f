"""Fingerprints: sha256 over canonical JSON of exactly what changes an output.

For one (sku, task, locale, variant): the cleaned fields the task's template reads, the template
id, the currency, the model identity, the adapter version, the sampling hash and the guardrail set
version. Like vLLM's ``config/utils.py`` it refuses to hash a value type it does not know rather
than hash it wrongly (``repr`` of an unknown object is not stable across processes).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

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


def digest(obj: Any) -> str:
    data = json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


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

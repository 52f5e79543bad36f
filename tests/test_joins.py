"""Broadcast joins give the same rows as Ray Data's hash joins (the path above the limit)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pdgen_core import joins
from pdgen_core.stages import reviews, validate

KEY = ("sku", "locale", "variant", "input_fingerprint")


@pytest.fixture(params=["broadcast", "hash"])
def path(request, monkeypatch):
    """Run each test on both paths: a limit of 0 forces Ray's hash join."""
    monkeypatch.setenv("PDGEN_BROADCAST_JOIN_ROWS", "1000000" if request.param == "broadcast" else "0")
    monkeypatch.setenv("PDGEN_BROADCAST_KEYS", "1000000" if request.param == "broadcast" else "0")
    return request.param


def _work():
    import ray

    t = pa.table({
        "sku": ["a", "b", "c", "d", None, "f", "g", "h"],
        "locale": ["en", "en", "de", "en", "en", None, "en", "en"],
        "variant": ["", "", "", "x", "", "", "", ""],
        "input_fingerprint": ["1", "2", "3", "4", "5", "6", "7", "8"],
        "payload": list(range(8)),
    })
    return ray.data.from_arrow([t.slice(0, 3), t.slice(3, 3), t.slice(6)])


def test_anti_join_matches_the_hash_join_including_null_keys(ray_local, path):
    import ray

    keys = ray.data.from_arrow(pa.table({
        "sku": ["a", "c", "d", None, "f", "zz"],
        "locale": ["en", "de", "en", "en", None, "en"],
        "variant": ["", "", "", "", "", ""],        # d's variant differs: no match
        "input_fingerprint": ["1", "3", "4", "5", "6", "9"],
        "extra": [0, 0, 0, 0, 0, 0],                # columns beyond the key are ignored
    }))
    got = sorted(r["payload"] for r in joins.anti_join(_work(), keys, KEY).take_all())
    # a and c match; d differs in variant; a null in any key part never matches (SQL semantics)
    assert got == [1, 3, 4, 5, 6, 7]


def test_anti_join_with_no_keys_keeps_everything(ray_local, path):
    import ray

    empty = ray.data.from_arrow(pa.table({c: pa.array([], pa.string()) for c in KEY}))
    assert joins.anti_join(_work(), empty, KEY).count() == 8
    assert joins.anti_join(_work(), None, KEY).count() == 8


def test_single_column_anti_join(ray_local, path):
    import ray

    skus = ray.data.from_arrow(pa.table({"sku": ["a", "b", "g"]}))
    got = sorted(r["sku"] or "-" for r in joins.anti_join(_work(), skus, ("sku",)).take_all())
    assert got == ["-", "c", "d", "f", "h"]


def test_left_join_unique_adds_columns_and_nulls_for_misses(ray_local, path):
    import ray

    right = ray.data.from_arrow(pa.table({"sku": ["b", "h", "zz"], "n": [20, 80, 99],
                                          "s": ["bee", "aitch", "none"]}))
    schema = pa.schema([("sku", pa.string()), ("n", pa.int64()), ("s", pa.string())])
    rows = {r["payload"]: r for r in joins.left_join_unique(_work(), right, "sku", schema).take_all()}
    assert len(rows) == 8
    assert (rows[1]["n"], rows[1]["s"]) == (20, "bee")
    assert (rows[7]["n"], rows[7]["s"]) == (80, "aitch")
    assert all(rows[i]["n"] is None and rows[i]["s"] is None for i in (0, 2, 3, 4, 5, 6))


def test_broadcast_limit_is_respected(ray_local, monkeypatch):
    import ray

    keys = ray.data.from_arrow(pa.table({"sku": ["a", "b", "c"]}))
    monkeypatch.setenv("PDGEN_BROADCAST_JOIN_ROWS", "3")
    assert joins.small_side(keys)[1] is not None
    monkeypatch.setenv("PDGEN_BROADCAST_JOIN_ROWS", "2")
    assert joins.small_side(keys)[1] is None


def test_duplicate_skus_on_both_paths(ray_local, path):
    import ray

    ds = ray.data.from_arrow([pa.table({"sku": ["a", "b", "a"]}), pa.table({"sku": ["c", "b", "d"]})])
    assert validate.find_duplicate_skus(ds) == frozenset({"a", "b"})
    assert validate.find_duplicate_skus(ray.data.from_arrow(pa.table({"sku": ["x", None, "y", None]}))) == frozenset()


def test_duplicate_sku_hashes_only_make_candidates():
    """The hash pass's pieces, without Ray: repeated hashes across blocks are found once each, and
    the candidate pass returns every sku behind a repeated hash, duplicated or not (a 64-bit
    collision), for the exact count on the driver."""
    import numpy as np

    h = lambda *v: pa.table({"h": pa.array(v, pa.uint64())})  # noqa: E731
    assert validate._repeated_hashes(h(5, 1), h(2, 5), h(5), h()).tolist() == [5]
    assert validate._repeated_hashes(h(1, 2), h(3)).tolist() == [] and validate._repeated_hashes().tolist() == []
    t = pa.table({"sku": ["aa", "bb", None, "aa", "cc"]})
    real = validate._hash_skus(t.column("sku"))
    assert len(real) == 4 and real[0] == real[2] and len(set(real.tolist())) == 3
    picked = validate._skus_with_hash(t, np.array([real[0], real[1]], np.uint64))
    assert picked.column("sku").to_pylist() == ["aa", "bb", "aa"]  # "bb" as if it collided with "aa"


def test_grouped_reviews_on_both_paths(ray_local, path, tmp_path):
    import pyarrow.parquet as pq

    from pdgen_core.spec import ReviewsSpec

    pq.write_table(pa.table({"product_id": ["p1", "p2", "p1", "p3", "p1", " "],
                             "review_text": ["ok", "great value", "too small", "fine", "the best", "x"],
                             "rating": [3, 5, 2, None, 5, 1]}), tmp_path / "r.parquet")
    rv = ReviewsSpec(uri=str(tmp_path), columns={"sku": "product_id", "text": "review_text", "rating": "rating"})
    got = {r["sku"]: r for r in reviews.grouped_reviews(rv).take_all()}
    assert set(got) == {"p1", "p2", "p3"}  # the blank sku is dropped by cleaning
    assert got["p1"]["review_count"] == 3 and got["p1"]["avg_rating"] == 3.33
    assert [r["text"] for r in json.loads(got["p1"]["reviews_json"])] == ["too small", "the best", "ok"]
    assert got["p3"]["avg_rating"] is None


def test_group_all_matches_group_reviews_per_sku():
    t = pa.table({"sku": ["b", "a", "b"], "text": ["x", "y", "zz"], "rating": [1.0, None, 3.0]},
                 schema=reviews.CLEANED)
    out = {r["sku"]: r for r in reviews.group_all(t).to_pylist()}
    assert out["b"] == reviews.group_reviews(t.filter(pa.array([True, False, True]))).to_pylist()[0]
    assert out["a"]["review_count"] == 1
    assert reviews.group_all(reviews.CLEANED.empty_table()).num_rows == 0


def test_hash_join_partitions_grow_with_the_right_side():
    from pdgen_core.joins import HASH_PARTITION_ROWS, hash_partitions

    assert hash_partitions(0, 4) == 4 and hash_partitions(1_000_000, 4) == 4
    assert hash_partitions(5_000_000, 4) == 5_000_000 // HASH_PARTITION_ROWS
    assert hash_partitions(HASH_PARTITION_ROWS * 12 + 1, 4) == 13  # rounds up


def test_contains_walks_equal_high_words():
    """Digests that share their high word (rare: about n / 2^64) are told apart by the low word."""
    table = pa.table({"_kh": pa.array([5, 5, 5, 1, 9], pa.uint64()), "_kl": pa.array([3, 1, 2, 7, 0], pa.uint64())})
    digests = joins._sorted_digests(table, pa.table({"_kh": pa.array([], pa.uint64()),
                                                     "_kl": pa.array([], pa.uint64())}))
    assert digests[0].tolist() == [1, 5, 5, 5, 9] and digests[1].tolist() == [7, 1, 2, 3, 0]
    hi = np.array([5, 5, 5, 5, 1, 1, 9, 0, 10], np.uint64)
    lo = np.array([1, 2, 3, 4, 7, 8, 0, 0, 0], np.uint64)
    assert joins.contains(digests, hi, lo).tolist() == [True, True, True, False, True, False, True, False, False]
    assert not joins.contains(joins._sorted_digests(), hi, lo).any()


def test_key_digests_are_stable_distinct_and_null_aware(monkeypatch):
    t = pa.table({"sku": ["a", "a", "ab", None, "a"], "locale": ["b", "b", "", "en", "b\x1fc"]})
    hi, lo, valid = joins.key_digests(t, ("sku", "locale"))
    monkeypatch.setattr(joins, "DIGEST_CHUNK", 2)  # a block worked through in chunks: the same
    chunked = joins.key_digests(t, ("sku", "locale"))
    assert [x.tolist() for x in chunked] == [hi.tolist(), lo.tolist(), valid.tolist()]
    assert valid.tolist() == [True, True, True, False, True]
    pairs = list(zip(hi.tolist(), lo.tolist()))
    assert pairs[0] == pairs[1] and len({pairs[0], pairs[2], pairs[4]}) == 3
    again = joins.key_digests(t.slice(0, 1), ("sku", "locale"))
    assert (again[0][0], again[1][0]) == pairs[0]  # the same key, the same digest, in any batch
    assert [len(x) for x in joins.key_digests(t.slice(0, 0), ("sku",))] == [0, 0, 0]

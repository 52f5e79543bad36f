"""A changes feed reads only the rows it names (issue 23, part 1): the feed's skus are a predicate
pushed into the catalog's Parquet scan, and the committed keys are read for those skus only, from
the Delta files whose sku statistics can hold them.

Pruning is checked by what is *not* read: a catalog file whose data pages are overwritten (its
footer intact) and a Delta data file that is deleted both fail a full read, so a read of other
skus that succeeds never touched them. The corrupted catalog file is a middle one: to size its
blocks, Ray's Parquet reader samples the first 1,024 rows of 2 to 10 files spread over the list
(the first and the last of three), whatever the predicate: a fixed cost, not a scan.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from pdgen_core import incremental, storage
from pdgen_core.pipeline import GenerationRun
from pdgen_core.spec import CatalogSpec, spec_from_dict
from pdgen_core.stages import read

COLUMNS = {"sku": "product_id", "title": "product_name", "price": "price_usd"}


def _catalog(bucket: str, files: int = 3, rows: int = 40, sku=lambda i: f"SKU-{i:04d}") -> list[storage.Location]:
    out = []
    for f in range(files):
        ids = range(f * rows, (f + 1) * rows)
        t = pa.table({"product_id": [sku(i) for i in ids], "product_name": [f"Shirt {i}" for i in ids],
                      "price_usd": [float(i) for i in ids]})
        loc = storage.resolve(f"{bucket}/catalog/part-{f}.parquet")
        pq.write_table(t, loc.path, filesystem=loc.fs, row_group_size=10)
        out.append(loc)
    return out


def _corrupt_data_pages(loc: storage.Location) -> None:
    """Overwrite the file's first data pages, keeping its footer (statistics) readable."""
    with loc.fs.open_input_file(loc.path) as f:
        data = f.read()
    footer = int.from_bytes(data[-8:-4], "little") + 8
    body = bytearray(data)
    body[4:len(data) - footer] = b"\xff" * (len(data) - footer - 4)
    with loc.fs.open_output_stream(loc.path) as f:
        f.write(bytes(body))


def _read(bucket: str, skus, **cat) -> list[dict]:
    spec = CatalogSpec(uri=f"{bucket}/catalog/", columns=COLUMNS, **cat)
    plan = read.column_plan(spec, {"price"})
    return sorted(read.read_catalog(spec, plan, skus=skus).take_all(), key=lambda r: r["sku"])


def test_the_catalog_read_for_a_feed_skips_files_its_skus_are_not_in(ray_local, bucket):
    locs = _catalog(bucket)
    _corrupt_data_pages(locs[1])  # skus 40-79: a read of them would fail
    rows = _read(bucket, ["SKU-0003", "SKU-0087", "SKU-9999"])
    assert [(r["sku"], r["price"]) for r in rows] == [("SKU-0003", 3.0), ("SKU-0087", 87.0)]
    assert _read(bucket, []) == []
    with pytest.raises(Exception):  # the corrupted file cannot be read
        pq.read_table(locs[1].path, filesystem=locs[1].fs)


def test_an_integer_sku_column_takes_the_feed_skus_as_numbers(ray_local, bucket):
    _catalog(bucket, files=2, sku=lambda i: i)
    rows = _read(bucket, ["7", " 45", "x", "7.5"])
    assert [r["sku"] for r in rows] == [7, 45]


def test_with_a_limit_the_catalog_is_read_as_without_a_feed(ray_local, bucket):
    """Which rows a limit keeps does not depend on the feed: the run reads them and narrows after
    (and counts the feed's skus past the limit)."""
    _catalog(bucket, files=1)
    assert len(_read(bucket, ["SKU-0003"], limit=5)) == 5


def _content(bucket: str, parts: int = 3, rows: int = 20) -> storage.Location:
    loc = storage.resolve(f"{bucket}/out/content/description")
    for p in range(parts):
        ids = range(p * rows, (p + 1) * rows)
        t = pa.table({"sku": [f"SKU-{i:04d}" for i in ids], "locale": ["en"] * rows, "variant": [""] * rows,
                      "input_fingerprint": [f"fp{i}" for i in ids], "text": ["t"] * rows})
        write_deltalake(loc.uri, t, mode="append", storage_options=storage.table_options(loc))
    return loc


def test_committed_keys_of_feed_skus_come_from_the_delta_files_that_can_hold_them(ray_local, bucket):
    loc = _content(bucket)
    dt = incremental.commit.open_table(loc)
    files = incremental.prune_files(dt, loc, ["SKU-0005", "SKU-0007"])
    assert len(files) == 1 and len(dt.file_uris()) == 3
    assert incremental.prune_files(dt, loc, ["SKU-0005", "SKU-0045"]) != files
    assert incremental.prune_files(dt, loc, ["SKU-9999", "A"]) == []
    for f in set(incremental._fs_path(u) for u in dt.file_uris()) - set(
            incremental.prune_files(dt, loc, ["SKU-0005", "SKU-0025"])):
        loc.fs.delete_file(f)  # the third file is gone: a full read fails, a pruned one does not
    keys = incremental.current_keys(loc, ["SKU-0005", "SKU-0025", "SKU-9999"]).take_all()
    assert sorted((r["sku"], r["input_fingerprint"]) for r in keys) == [("SKU-0005", "fp5"), ("SKU-0025", "fp25")]
    assert set(keys[0]) == set(incremental.JOIN_KEY)
    assert incremental.current_keys(loc, []).count() == 0


def test_a_cut_max_statistic_still_keeps_the_file():
    """A long string's max may be stored cut to a prefix: a sku it prefixes can be in the file."""
    class Dt:
        def get_add_actions(self, flatten):
            return pa.table({"path": ["a.parquet"], "min.sku": ["AAA"], "max.sku": ["B" * 4]})

    loc = storage.resolve("/tmp/t")
    assert incremental.prune_files(Dt(), loc, ["BBBB-long-sku"]) == ["/tmp/t/a.parquet"]
    assert incremental.prune_files(Dt(), loc, ["BBBC"]) == []


def test_committed_keys_of_a_merged_table_read_for_feed_skus(ray_local, bucket):
    """A Delta merge writes string_view columns, which pyarrow's is_in does not take: the scan's
    schema is the table's in plain types, so those files are cast while read."""
    from deltalake import DeltaTable

    loc = _content(bucket, parts=1)
    up = pa.table({"sku": ["SKU-0003", "SKU-0100"], "locale": ["en"] * 2, "variant": [""] * 2,
                   "input_fingerprint": ["new3", "fp100"], "text": ["u"] * 2})
    (DeltaTable(loc.uri, storage_options=storage.table_options(loc))
     .merge(up, "s.sku = t.sku", source_alias="s", target_alias="t")
     .when_matched_update_all().when_not_matched_insert_all().execute())
    keys = incremental.current_keys(loc, ["SKU-0003", "SKU-0100", "SKU-0004"]).take_all()
    assert sorted((r["sku"], r["input_fingerprint"]) for r in keys) == [
        ("SKU-0003", "new3"), ("SKU-0004", "fp4"), ("SKU-0100", "fp100")]


def test_a_feed_run_cleans_only_the_feed_rows_and_counts_the_skus_not_found(ray_local, bucket):
    locs = _catalog(bucket)
    _corrupt_data_pages(locs[1])
    feed = storage.resolve(f"{bucket}/feeds/prices.parquet")
    pq.write_table(pa.table({"product_id": ["SKU-0002", "SKU-0090", "SKU-5000", None],
                             "price_usd": [999.0, 1.5, 2.0, 3.0]}), feed.path, filesystem=feed.fs)
    spec = spec_from_dict({"name": "feed", "catalog": {"uri": f"{bucket}/catalog/", "columns": COLUMNS},
                           "tasks": ["description"], "model": {"source": "pdgen-tiny"},
                           "output": {"uri": f"{bucket}/out/"}, "mode": "incremental"})
    run = GenerationRun(spec, changes=feed.uri)
    clean = run._clean(read.column_plan(spec.catalog, {"price"}))
    rows = sorted(clean.take_all(), key=lambda r: r["sku"])
    assert [(r["sku"], r["price"], r["reject_reason"]) for r in rows] == [("SKU-0002", 999.0, None), ("SKU-0090", 1.5, None)]
    assert (run.counts.feed_unknown_skus, run.counts.feed_beyond_limit) == (1, 0)
    assert run.feed_skus == ["SKU-0002", "SKU-0090", "SKU-5000"]


def test_narrow_for_feed_skus_reads_their_committed_keys_only(ray_local, bucket):
    """The anti-join for a feed's items against the keys read for its skus gives what it gives
    against the whole table: changed and new items are generated, unchanged ones are not."""
    import ray

    from pdgen_core.staging import RunLayout

    _content(bucket)
    layout = RunLayout(storage.resolve(f"{bucket}/out/"), "r1")
    work = ray.data.from_arrow(pa.table({
        "sku": ["SKU-0005", "SKU-0025", "SKU-0500"], "task": ["description"] * 3, "locale": ["en"] * 3,
        "variant": [""] * 3, "input_fingerprint": ["fp5", "changed", "fp500"]}))
    for skus in (["SKU-0005", "SKU-0025", "SKU-0500"], None):
        out = incremental.narrow(work, layout, ["description"], skus=skus).take_all()
        assert sorted(r["sku"] for r in out) == ["SKU-0025", "SKU-0500"], skus

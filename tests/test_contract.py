"""pdgen_core.stages.contract: declared columns, the 1:1 row check, and the one map_batches call."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pdgen_core.errors import StageError
from pdgen_core.stages import contract, plan, rejects, validate
from pdgen_core.stages.contract import RAY_DEFAULT, UDF_BATCH_ROWS, RowStage, apply

SCHEMA = pa.schema([("x", pa.int64())])


def _stage(fn, one_to_one=True):
    return RowStage("demo", fn, needs=frozenset({"x"}), makes=SCHEMA, one_to_one=one_to_one)


def test_a_stage_refuses_a_batch_without_the_columns_it_needs():
    with pytest.raises(StageError, match=r"stage demo: its input lacks column\(s\) \['x'\]") as ei:
        _stage(lambda b: b)(pa.table({"y": [1]}))
    assert ei.value.stage == "demo"


def test_a_one_to_one_stage_refuses_to_lose_or_duplicate_a_row():
    t = pa.table({"x": [1, 2]})
    with pytest.raises(StageError, match="2 rows in, 1 out"):
        _stage(lambda b: b.slice(0, 1))(t)
    with pytest.raises(StageError, match="2 rows in, 4 out"):
        _stage(lambda b: pa.concat_tables([b, b]))(t)
    assert _stage(lambda b: pa.concat_tables([b, b]), one_to_one=False)(t).num_rows == 4


def test_a_stage_must_make_what_it_declares():
    with pytest.raises(StageError, match="output lacks"):
        _stage(lambda b: pa.table({"z": [0] * b.num_rows}))(pa.table({"x": [1]}))


def test_apply_is_the_one_place_map_batches_arguments_are_set():
    calls = []

    class FakeDataset:
        def map_batches(self, fn, **kw):
            calls.append((fn, kw))
            return self

    apply(FakeDataset(), validate.CLEAN)
    apply(FakeDataset(), plan.PLAN, ctx="c")
    keep = RowStage("keep", lambda b: b, needs=frozenset({"x"}), makes=SCHEMA, one_to_one=True,
                    batch_size=RAY_DEFAULT)
    apply(FakeDataset(), keep)
    assert calls[0] == (validate.CLEAN, {"batch_format": "pyarrow", "batch_size": UDF_BATCH_ROWS})
    assert calls[1] == (plan.PLAN, {"batch_format": "pyarrow", "batch_size": UDF_BATCH_ROWS,
                                    "fn_kwargs": {"ctx": "c"}})
    assert calls[2] == (keep, {"batch_format": "pyarrow"})


def test_pdgen_stages_declare_their_columns():
    stages = [validate.CLEAN, validate.MARK_DUPLICATES, plan.PLAN,
              rejects.VALIDATION_REJECTS, rejects.PLAN_REJECTS]
    for s in stages:
        assert isinstance(s, RowStage) and s.needs and s.makes.names, s.name
    assert plan.PLAN.batch_size == contract.UDF_BATCH_ROWS


def test_cleaning_keeps_every_row_through_the_contract():
    t = pa.table({"sku": ["a", None, "a"], "title": ["T", "T", None], "price": [1.0, 2.0, 3.0]})
    out = validate.CLEAN(t)
    assert out.num_rows == 3 and out.schema.equals(validate.CLEAN_SCHEMA)


def test_unknown_feed_skus_and_dropped_reviews_are_counted(tmp_path):
    """A changes feed's skus that the catalog lacks, and reviews cleaning drops, reach the run
    record's counts instead of vanishing."""
    import pyarrow.parquet as pq

    from pdgen_core import incremental
    from pdgen_core.run_record import Counts
    from pdgen_core.stages import read

    class Clean:  # the narrowed catalog, as a Ray Dataset of it would answer
        def select_columns(self, cols):
            return self

        def iter_batches(self, batch_format):
            yield pa.table({"sku": ["a", None]})

    feed = pa.table({"sku": ["a", "b", "c", None]})
    assert incremental.unknown_feed_skus(feed, Clean()) == 2
    pq.write_table(pa.table({"x": list(range(7))}), tmp_path / "r.parquet")
    loc, files = read.catalog_files(str(tmp_path))
    assert read.count_rows(files, loc.fs) == 7
    c = Counts()
    assert (c.reviews_dropped, c.feed_unknown_skus) == (0, 0)

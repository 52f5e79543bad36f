"""pdgen_core.synth: the synthetic catalog is deterministic and carries its bad rows."""

import pyarrow.parquet as pq

from pdgen_core.synth import make_catalog, write_catalog


def test_make_catalog_deterministic_with_bad_rows():
    a, b = make_catalog(50, seed=3, bad_rows=8), make_catalog(50, seed=3, bad_rows=8)
    assert a.to_pandas().equals(b.to_pandas()) and a.num_rows == 58
    assert len(set(a.column("product_id").to_pylist()[:50])) == 50
    bad = a.slice(50).to_pylist()
    assert any(r["product_name"] is None for r in bad)
    assert any(r["price_usd"] is not None and r["price_usd"] < 0 for r in bad)


def test_write_catalog_parallel_files(tmp_path):
    paths = write_catalog(str(tmp_path / "cat"), 1000, files=4, bad_rows=3)
    assert len(paths) == 4
    assert sum(pq.read_metadata(p).num_rows for p in paths) == 1003

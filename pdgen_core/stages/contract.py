"""The stage contract: a row stage declares the columns it needs and makes, and whether it keeps
one output row per input row; ``apply`` is the one place that hands it to ``map_batches``.

As Ray's own batch stages (``ray/llm/_internal/batch/stages/base.py``) do, a stage refuses a batch
that lacks a column it needs, and a 1:1 stage refuses to lose or duplicate a row: either is a bug
upstream, and it fails the job with the stage's name (``errors.StageError``) instead of writing a
table with a column or rows missing. What the stage does is apart from how it is scheduled: its
batch size is declared here, with the reason, not at each call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pyarrow as pa

from pdgen_core.errors import StageError

# Rows per call of the per-row Python stages (cleaning, planning). Ray's default hands a UDF a
# whole block, and a catalog file written with one big row group is one block: a 250k-row file
# took one worker to 8 GB in the 5M-row plan benchmark. Bounded batches keep workers flat.
UDF_BATCH_ROWS = 8192
RAY_DEFAULT = object()  # leave Ray's own batch size (the guard: batches as the engine emits them)


@dataclass(frozen=True)
class RowStage:
    """A ``pa.Table -> pa.Table`` function with its declared columns."""

    name: str
    fn: Callable[..., pa.Table]
    needs: frozenset[str]
    makes: pa.Schema
    one_to_one: bool
    batch_size: Any = UDF_BATCH_ROWS

    def __call__(self, batch: pa.Table, **kw) -> pa.Table:
        missing = self.needs - set(batch.column_names)
        if missing:
            raise StageError(self.name, f"stage {self.name}: its input lacks column(s) {sorted(missing)} "
                                        f"(has {sorted(batch.column_names)})")
        out = self.fn(batch, **kw)
        if self.one_to_one and out.num_rows != batch.num_rows:
            raise StageError(self.name, f"stage {self.name}: {batch.num_rows} rows in, {out.num_rows} "
                                        "out; a 1:1 stage must keep every row exactly once")
        lacking = set(self.makes.names) - set(out.column_names)
        if lacking:
            raise StageError(self.name, f"stage {self.name}: its output lacks column(s) {sorted(lacking)}")
        return out


def apply(ds, stage: RowStage, **fn_kwargs):
    """``ds.map_batches`` for ``stage``: the one place pdgen's row stages get their Ray arguments."""
    kw: dict[str, Any] = {"batch_format": "pyarrow"}
    if stage.batch_size is not RAY_DEFAULT:
        kw["batch_size"] = stage.batch_size
    if fn_kwargs:
        kw["fn_kwargs"] = fn_kwargs
    return ds.map_batches(stage, **kw)

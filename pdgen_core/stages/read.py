"""Read: the catalog (one Parquet file or a folder, S3 or local) as a streaming Ray Dataset.

The column mapping is applied and only the columns the run needs are read (projection pushdown);
the driver opens the Parquet schema, never the rows. A missing required column stops the job here,
before any work, with the column and the mapping to fix.
"""

from __future__ import annotations

import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pdgen_core import storage
from pdgen_core.errors import InputError
from pdgen_core.spec import CatalogSpec

REQUIRED = ("sku", "title")


class CatalogError(InputError):
    """The catalog cannot be read as mapped; the message names the column and the fix."""


def catalog_files(uri: str) -> tuple[storage.Location, list[str]]:
    loc = storage.resolve(uri)
    files = storage.list_files(loc, suffix=".parquet") or storage.list_files(loc)
    if not files:
        raise CatalogError(f"catalog.uri {uri!r}: no Parquet files there; check the URI")
    return loc, files


def count_rows(files: list[str], fs) -> int:
    """Rows of Parquet files, from their footers."""
    return sum(pq.ParquetFile(fs.open_input_file(f)).metadata.num_rows for f in files)


def source_schema(uri: str):
    loc, files = catalog_files(uri)
    try:
        return pads.dataset(files[0], filesystem=loc.fs, format="parquet").schema
    except Exception as exc:  # unreadable file: a spec/data problem, not a crash later
        raise CatalogError(f"catalog.uri {uri!r}: cannot read {files[0]} as Parquet ({exc})") from None


def column_plan(cat: CatalogSpec, wanted: set[str]) -> dict[str, str]:
    """canonical -> source column for the ``wanted`` canonical fields present in the catalog.

    Required fields must be present; optional ones are read when mapped or present by name.
    """
    names = set(source_schema(cat.uri).names)
    plan: dict[str, str] = {}
    for canon in sorted(wanted | set(REQUIRED)):
        src = cat.columns.get(canon, canon)
        if src in names:
            plan[canon] = src
        elif canon in REQUIRED or canon in cat.columns:
            how = (f"catalog.columns.{canon} maps it to {src!r}" if canon in cat.columns
                   else f"no catalog.columns.{canon} mapping and no column named {canon!r}")
            raise CatalogError(
                f"catalog {cat.uri!r} has no column {src!r} for required field {canon!r} ({how}); "
                f"available columns: {sorted(names)}; fix catalog.columns.{canon}"
                if canon in REQUIRED else
                f"catalog {cat.uri!r} has no column {src!r} ({how}); available: {sorted(names)}; "
                f"fix or remove catalog.columns.{canon}"
            )
    _check_types(cat.uri, sorted(set(plan.values())))
    return plan


def _check_types(uri: str, columns: list[str]) -> None:
    """Every file's footer: a column whose type differs between files beyond what Arrow
    promotes (int -> double) stops here, not in Ray's schema inference ("Unable to merge")."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    loc, files = catalog_files(uri)
    seen = None
    for f in files:
        s = pq.read_schema(loc.fs.open_input_file(f))
        s = pa.schema([s.field(c) for c in columns if c in s.names])
        try:
            seen = s if seen is None else pa.unify_schemas([seen, s], promote_options="permissive")
        except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
            raise CatalogError(
                f"catalog {uri!r}: {f} disagrees with the files before it on a column's type "
                f"({exc}); rewrite the files with one type per column or point catalog.uri at "
                "files that agree"
            ) from None


def read_catalog(cat: CatalogSpec, plan: dict[str, str], override_num_blocks: int | None = None):
    """A lazy Dataset of the mapped columns, renamed to canonical names."""
    import ray

    loc, files = catalog_files(cat.uri)
    ds = ray.data.read_parquet(
        files, filesystem=loc.fs, columns=sorted(set(plan.values())),
        override_num_blocks=override_num_blocks,
    ).map_batches(storage.plain_types, batch_format="pyarrow", zero_copy_batch=True)
    if cat.limit:
        ds = ds.limit(cat.limit)
    inverse = {src: canon for canon, src in plan.items()}
    if len(inverse) != len(plan):  # one source column feeds two canonical fields
        def dup(batch, plan=plan):
            import pyarrow as pa

            return pa.table({c: batch.column(s) for c, s in plan.items()})

        return ds.map_batches(dup, batch_format="pyarrow", zero_copy_batch=True)
    return ds.rename_columns(inverse)

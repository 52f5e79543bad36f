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


def sku_predicate(cat: CatalogSpec, plan: dict[str, str], skus: list[str]):
    """A Ray Data expression selecting the catalog rows of ``skus`` (a changes feed's), or None
    when it cannot be pushed down: the sku column's type is neither text nor a number, or it is
    ``string_view`` (no ``is_in`` kernel takes it). The values are the feed's skus in the
    column's type (``"42"`` is 42 in an integer column); a feed sku that is no such value names
    no row. Skus match as stored: the catalog's ``" A1 "`` is not the feed's ``"A1"``."""
    import pyarrow as pa
    from ray.data.expressions import col

    src = plan["sku"]
    typ = source_schema(cat.uri).field(src).type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        values = list(skus)
    elif pa.types.is_integer(typ) or pa.types.is_floating(typ):
        values = []
        for s in skus:
            try:
                v = float(s.strip())
            except ValueError:
                continue
            if pa.types.is_floating(typ):
                values.append(v)
            elif v.is_integer():
                values.append(int(v))
    else:
        return None
    if not values:  # is_in([]) fails to bind ("string vs null"); no value names no row
        return col(src).is_null() & col(src).is_not_null()
    return col(src).is_in(pa.array(values, typ).to_pylist())


def read_catalog(cat: CatalogSpec, plan: dict[str, str], override_num_blocks: int | None = None,
                 skus: list[str] | None = None):
    """A lazy Dataset of the mapped columns, renamed to canonical names.

    With ``skus`` (a changes feed's) and no ``catalog.limit``, only the rows of those skus: the
    predicate is pushed into the Parquet scan, which skips the row groups (and so the files)
    whose sku statistics rule them out. With a limit the first ``limit`` rows are read as
    without a feed (which rows those are does not depend on the feed), and narrowed after."""
    import ray

    loc, files = catalog_files(cat.uri)
    ds = ray.data.read_parquet(
        files, filesystem=loc.fs, columns=sorted(set(plan.values())),
        override_num_blocks=override_num_blocks,
    )
    predicate = sku_predicate(cat, plan, skus) if skus is not None and not cat.limit else None
    if predicate is not None:
        ds = ds.filter(expr=predicate)
    ds = ds.map_batches(storage.plain_types, batch_format="pyarrow", zero_copy_batch=True)
    if cat.limit:
        ds = ds.limit(cat.limit)
    inverse = {src: canon for canon, src in plan.items()}
    if len(inverse) != len(plan):  # one source column feeds two canonical fields
        def dup(batch, plan=plan):
            import pyarrow as pa

            return pa.table({c: batch.column(s) for c, s in plan.items()})

        return ds.map_batches(dup, batch_format="pyarrow", zero_copy_batch=True)
    return ds.rename_columns(inverse)

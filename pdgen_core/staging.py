"""Where a run keeps its work until the commit: ``<output>/_staging/<run_id>/``.

A run stages everything it produces as Parquet, and commits only at the end (``stages.commit``);
a crashed run keeps its staging folder so that ``--resume`` regenerates only what is missing. The
layout, in one place::

    <output>/_staging/<run_id>/validate/          catalog rows rejected by validation
    <output>/_staging/<run_id>/plan/              items a task cannot run on (too_few_reviews)
    <output>/_staging/<run_id>/generated/         every attempt: retry rows beside each item's final one
    <output>/_staging/<run_id>/deleted/<task>/    committed keys whose sku left the catalog
    <output>/content/<task>/ , rejects/<task>/    the Delta tables
    <output>/runs/<run_id>.json                   the run record (written last)
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import pyarrow.dataset as pads

from pdgen_core import storage


def new_run_id() -> str:
    """UTC time to the second plus 6 random hex digits: sortable and unique."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class RunLayout:
    """The locations of one run under its output folder."""

    out: storage.Location
    run_id: str

    @property
    def staging(self) -> storage.Location:
        return self.out.child("_staging", self.run_id)

    @property
    def generated(self) -> storage.Location:
        """What the engine actors staged (a crashed run's ``round-<k>`` folders, from before
        retries stayed in the engine, are not read: those items are generated again)."""
        return self.staging.child("generated")

    @property
    def validate_rejects(self) -> storage.Location:
        return self.staging.child("validate")

    @property
    def plan_rejects(self) -> storage.Location:
        return self.staging.child("plan")

    def deleted(self, task: str) -> storage.Location:
        return self.staging.child("deleted", task)

    @property
    def write_probe(self) -> storage.Location:
        return self.out.child("_staging", ".write-probe")

    def content(self, task: str) -> storage.Location:
        return self.out.child("content", task)

    def rejects(self, task: str) -> storage.Location:
        return self.out.child("rejects", task)

    def record(self) -> storage.Location:
        return self.out.child("runs", f"{self.run_id}.json")


@dataclass(frozen=True)
class StagedFiles:
    """The staged Parquet files of a finished run, listed once for the counts and the commit."""

    generated: list[str]
    validate: list[str]
    plan: list[str]
    fs: object

    @classmethod
    def of(cls, layout: RunLayout) -> StagedFiles:
        return cls(staged_files(layout.generated), staged_files(layout.validate_rejects),
                   staged_files(layout.plan_rejects), layout.out.fs)


def staged_files(loc: storage.Location) -> list[str]:
    return storage.list_files(loc, suffix=".parquet")


def final_rows(files: list[str], fs) -> int:
    """Items in staged files: their final rows (a ``retry`` row is an attempt that went round again)."""
    return pads.dataset(files, filesystem=fs).count_rows(filter=pads.field("status") != "retry")


def staged_items(loc: storage.Location) -> int:
    """Items staged so far under ``loc``: the progress bar's numerator."""
    n = 0
    for f in staged_files(loc):
        try:
            n += final_rows([f], loc.fs)
        except Exception:  # a file being written
            pass
    return n

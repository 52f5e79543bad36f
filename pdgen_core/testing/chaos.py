"""Fault scenarios' bookkeeping: run a job as the CLI does, audit what it committed, keep figures.

- ``run_cli``: ``pdgen run`` in a subprocess with a chosen environment (a fault proxy as the S3
  endpoint, sentinel credentials); the subprocess starts its own Ray, so its workers inherit
  that environment.
- ``audit``: compare the committed content table with the catalog's valid keys: rows lost (a
  valid key neither in content nor rejected by guard/generate), rows duplicated (a key twice in
  the current version, or twice among this run's rejects).
- ``record`` / ``summary``: each scenario appends one JSON line to
  ``bench/results/chaos-latest.jsonl`` (``PDGEN_CHAOS_LOG`` overrides); the summary keeps the
  latest line per scenario.

``python -m pdgen_core.testing.chaos`` prints the figures table (what ``make chaos`` ends with).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pdgen_core import storage
from pdgen_core.stages import validate
from pdgen_core.stages.commit import open_table

COLUMNS = ("scenario", "rows", "lost", "duplicated", "leaks", "result", "wall_s", "faults")


def log_path() -> Path:
    return Path(os.environ.get("PDGEN_CHAOS_LOG", "bench/results/chaos-latest.jsonl"))


@dataclass
class CliRun:
    rc: int
    stdout: str
    stderr: str
    wall_s: float
    record: dict[str, Any] | None = None
    ray_logs: Path | None = None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(spec: dict[str, Any], env: dict[str, str], run_id: str, timeout: float = 900,
            args: tuple[str, ...] = (), keep_logs: bool = False) -> CliRun:
    """``pdgen run SPEC --run-id RUN_ID`` in a fresh process (its own Ray) with ``env`` on top of
    this process's environment. Ray's session folder goes to a temp folder, removed afterwards
    unless ``keep_logs`` (then ``ray_logs`` names it; the caller removes its parent)."""
    import shutil
    import time

    import yaml

    work = Path(tempfile.mkdtemp(prefix="pdc-"))  # short: Ray's socket paths live under it
    spec_path = work / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    full_env = {**os.environ, "RAY_ADDRESS": "local", "RAY_TMPDIR": str(work / "r"),
                "PDGEN_LOG_JSON": "1", "RAY_DEDUP_LOGS": "0", **env}
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, "-m", "pdgen_core.cli", "run", str(spec_path),
                            "--run-id", run_id, *args],
                           env=full_env, capture_output=True, text=True, timeout=timeout,
                           errors="replace")
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = -9, _text(exc.stdout), _text(exc.stderr) + f"\n[timeout after {timeout}s]"
    run = CliRun(rc, out, err, time.monotonic() - t0, ray_logs=work / "r" if keep_logs else None)
    if not keep_logs:
        shutil.rmtree(work, ignore_errors=True)
    if rc == 0:
        loc = storage.resolve(spec["output"]["uri"]).child("runs", f"{run_id}.json")
        run.record = storage.read_json(loc)
    return run


def driver_lines(text: str) -> str:
    """``text`` without the lines Ray forwards from its workers ("(MapWorker(...) pid=123) ...")
    so that a check for tracebacks sees only what pdgen itself printed."""
    import re

    worker = re.compile(r" pid=\d+(, ip=[0-9.]+)?\)")
    return "\n".join(line for line in text.splitlines() if not worker.search(line))


def _text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return b if isinstance(b, str) else b.decode("utf-8", "replace")


@dataclass
class Audit:
    rows: int                     # valid work items expected
    committed: int                # content rows of this run in the current version
    rejected: int                 # this run's guard/generate rejects
    lost: int
    duplicated: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.lost == 0 and self.duplicated == 0


def expected_keys(catalog: pa.Table, columns: dict[str, str], locales=("en",), variants=("",)) -> set:
    """(sku, locale, variant) of every row the pipeline's validation accepts (duplicates removed)."""

    canon = {c: catalog.column(src) for c, src in columns.items() if src in catalog.column_names}
    clean = validate.clean_batch(pa.table(canon)).to_pylist()
    valid = [r["sku"] for r in clean if r["reject_reason"] is None]
    seen, dups = set(), set()
    for s in valid:
        (dups if s in seen else seen).add(s)
    return {(s, loc, v) for s in seen - dups for loc in locales for v in variants}


def audit(output_uri: str, task: str, record: dict[str, Any], expected: set) -> Audit:
    """Lost and duplicated rows of ``record``'s run in ``task``'s tables at ``output_uri``."""

    out = storage.resolve(output_uri)
    problems: list[str] = []
    content = open_table(out.child("content", task))
    rows = (content.to_pyarrow_table(filesystem=storage.table_filesystem(out.child("content", task))).to_pylist()
            if content is not None else [])
    keys = [(r["sku"], r["locale"], r["variant"]) for r in rows]
    dup_content = len(keys) - len(set(keys))
    rej_t = open_table(out.child("rejects", task))
    rej_loc = out.child("rejects", task)
    rejects = [r for r in (rej_t.to_pyarrow_table(filesystem=storage.table_filesystem(rej_loc)).to_pylist()
                           if rej_t is not None else [])
               if r["run_id"] == record["run_id"]]
    gen_rej = [(r["sku"], r["locale"], r["variant"]) for r in rejects if r["stage"] != "validate"]
    dup_rej = len(gen_rej) - len(set(gen_rej))
    mine = {k for k, r in zip(keys, rows) if r["run_id"] == record["run_id"]}
    lost = len(expected - mine - set(gen_rej))
    extra = (mine | set(gen_rej)) - expected
    if extra:
        problems.append(f"{len(extra)} committed key(s) not in the valid catalog, e.g. {sorted(extra)[:3]}")
    c = record["counts"]
    t = c["by_task"][task]
    if c["read"] != c["valid"] + c["invalid"]:
        problems.append(f"read {c['read']} != valid {c['valid']} + invalid {c['invalid']}")
    if t["planned"] != t["accepted"] + t["rejected"] + t["unchanged"]:
        problems.append(f"planned {t['planned']} != accepted + rejected + unchanged ({t})")
    if len(mine) != t["accepted"]:
        problems.append(f"content rows of the run {len(mine)} != accepted {t['accepted']}")
    if len(gen_rej) != t["rejected"]:
        problems.append(f"generation rejects {len(gen_rej)} != rejected {t['rejected']}")
    val_rej = sum(1 for r in rejects if r["stage"] == "validate")
    if val_rej != c["invalid"]:
        problems.append(f"validation rejects {val_rej} != invalid {c['invalid']}")
    return Audit(rows=len(expected), committed=len(mine), rejected=len(gen_rej), lost=lost,
                 duplicated=dup_content + dup_rej, problems=problems)


def find_leaks(secrets: list[str], texts: dict[str, str | bytes]) -> list[str]:
    """Names of the ``texts`` that contain any secret (raw, URL-encoded, or as JSON escapes)."""
    from urllib.parse import quote

    forms: list[bytes] = []
    for s in secrets:
        for f in {s, quote(s, safe=""), json.dumps(s)[1:-1]}:
            forms.append(f.encode())
    out = []
    for name, t in texts.items():
        b = t.encode("utf-8", "replace") if isinstance(t, str) else t
        if any(f in b for f in forms):
            out.append(name)
    return out


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (for leak scans of logs)."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file() and not p.is_symlink() and not p.name.endswith((".sock", ".lock")):
            try:
                out[str(p)] = p.read_bytes()
            except OSError:
                pass
    return out


def s3_objects(uri: str) -> dict[str, bytes]:
    """Every object under an S3 prefix or local folder, hidden ones (Delta logs) included."""
    loc = storage.resolve(uri)
    out = {}
    for f in storage.list_files(loc, hidden=True):
        with loc.fs.open_input_stream(f) as fh:
            out[f] = fh.read()
    return out


def record(scenario: str, *, rows: int, lost: int = 0, duplicated: int = 0, leaks: int = 0,
           result: str = "ok", wall_s: float = 0.0, faults: dict | None = None, **extra) -> None:
    """Append one scenario's figures to the chaos log."""
    p = log_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    line = {"scenario": scenario, "rows": rows, "lost": lost, "duplicated": duplicated,
            "leaks": leaks, "result": result, "wall_s": round(wall_s, 1), "faults": faults or {},
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **extra}
    with open(p, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, sort_keys=True, default=str) + "\n")


def latest(path: Path | None = None) -> list[dict[str, Any]]:
    p = path or log_path()
    if not p.is_file():
        return []
    by: dict[str, dict] = {}
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            by[d["scenario"]] = d
    return sorted(by.values(), key=lambda d: d["scenario"])


def _faults_str(f: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(f.items()) if v) or "-"


def summary(path: Path | None = None) -> str:
    """The figures table: one line per scenario (its latest result) and a total line."""
    rows = latest(path)
    if not rows:
        return f"no chaos results in {path or log_path()}"
    table = [[str(r.get(c, "")) if c != "faults" else _faults_str(r.get("faults") or {})
              for c in COLUMNS] for r in rows]
    tot = ["TOTAL: %d scenarios" % len(rows), str(sum(r["rows"] for r in rows)),
           str(sum(r["lost"] for r in rows)), str(sum(r["duplicated"] for r in rows)),
           str(sum(r["leaks"] for r in rows)),
           "%d ok" % sum(r["result"] == "ok" for r in rows), "", ""]
    widths = [max(len(c), *(len(x[i]) for x in table + [tot])) for i, c in enumerate(COLUMNS)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines = [fmt.format(*COLUMNS), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*x) for x in table] + [fmt.format(*tot)]
    return "\n".join(lines)


def main() -> None:  # pragma: no cover - a report
    print(summary())


if __name__ == "__main__":
    main()

"""A run's HTML report: one static, self-contained file (inline CSS, SVG and a few lines of JS).

    pdgen report RUN_ID --out report.html        # build_report(output_uri, run_id, out_path)

It reads the run record ``<output>/runs/<run_id>.json`` and, per task, the Delta tables
``content/<task>`` and ``rejects/<task>`` at the versions the run committed (filtered to the run's
rows), plus the content table's previous version for the side-by-side of changed texts.

Every catalog and model string is untrusted: it is HTML-escaped where it is written, and a
Content-Security-Policy allows only this file's own script (by hash), so injected markup is inert.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow.compute as pc

from pdgen_core import storage

MAX_ROWS = 200  # changed rows and rejects shown per task; the rest are counted, not printed
_KEY = ("sku", "locale", "variant")


def e(v: Any) -> str:
    """Escape anything for HTML text or a quoted attribute."""
    return escape("" if v is None else str(v), quote=True)


# --- data ---------------------------------------------------------------------------------------


@dataclass
class TaskData:
    name: str
    content: list[dict] = field(default_factory=list)  # this run's rows in content/<task>
    rejects: list[dict] = field(default_factory=list)  # this run's rows in rejects/<task>
    changed: list[tuple[dict, str]] = field(default_factory=list)  # (new row, previous text)
    new_keys: int = 0  # rows with no previous text
    versions: tuple[int | None, int | None] = (None, None)  # (content version, previous)
    note: str = ""  # what could not be read, said in the report rather than raised


def _open(loc: storage.Location, version: int | None):
    from deltalake import DeltaTable

    # Not DeltaTable.is_deltatable: against moto's server running in the same process (the tests)
    # it hung until its 120 s timeout, where this pyarrow check and DeltaTable() answer at once.
    if not storage.exists(loc.child("_delta_log")):
        return None
    return DeltaTable(loc.uri, version=version, storage_options=storage.table_options(loc))


def _rows(dt, loc: storage.Location, run_id: str | None = None,
          columns: Sequence[str] | None = None) -> list[dict]:
    names = {f.name for f in dt.schema().fields}
    cols = [c for c in columns if c in names] if columns else None  # older tables may lack one
    # Filtered after the cast, not with to_pyarrow_table(filters=...): files written by a Delta
    # merge hold string_view columns, and a string filter on them has no Arrow kernel.
    if run_id is not None and cols is not None and "run_id" not in cols:
        cols = [*cols, "run_id"]
    rows = []
    # Through our own filesystem: deltalake's default can abort the process at exit.
    for batch in dt.to_pyarrow_dataset(filesystem=storage.table_filesystem(loc)).to_batches(columns=cols):
        batch = storage.plain_types(batch)
        if run_id is not None:
            batch = batch.filter(pc.equal(batch.column("run_id"), run_id))
        rows.extend(batch.to_pylist())
    return rows


def _key(row: dict) -> tuple:
    return tuple(row.get(k) for k in _KEY)


def _key_sort(row: dict) -> tuple:
    """(sku, locale, variant) as strings: a sku's variants side by side, nulls first."""
    return tuple(str(row.get(k) or "") for k in _KEY)


def _compare(td: TaskData, prev, loc: storage.Location) -> None:
    """Split this run's rows into changed (with the previous text) and new against ``prev``."""
    # One row per key in a current-content table; if a table keeps history, the newest wins.
    latest: dict[tuple, dict] = {}
    newest = lambda r: (r.get("generated_at") is not None, r.get("generated_at") or 0)  # noqa: E731
    for r in _rows(prev, loc, columns=[*_KEY, "text", "generated_at"]):
        k = _key(r)
        if k not in latest or newest(r) > newest(latest[k]):
            latest[k] = r
    for row in td.content:
        old = latest.get(_key(row))
        if old is None:
            td.new_keys += 1
        elif old.get("text") != row.get("text"):
            td.changed.append((row, old.get("text") or ""))


_CONTENT_COLS = [*_KEY, "text", "tokens_in", "tokens_out", "attempts"]


def _load_staged(td: TaskData, root: storage.Location, run_id: str) -> None:
    """A run held as staged (``output.publish: staged`` or below ``guardrails.min_accept_rate``)
    committed to ``staged/<run_id>/<task>``, not to the content table: its rows come from there
    (tombstones left out), compared with the published content, which is what promoting it
    would change. The report is what an editor reads before ``pdgen promote``."""
    from pdgen_core.stages.commit import staged_table

    loc = staged_table(root, run_id, td.name)
    dt = _open(loc, None)
    if dt is None:
        td.note = f"no staged table at {loc.uri}"
        return
    rows = _rows(dt, loc, run_id, [*_CONTENT_COLS, "_op"])
    td.content = [{k: v for k, v in r.items() if k != "_op"} for r in rows if r.get("_op") != "delete"]
    content = root.child("content", td.name)
    published = _open(content, None)
    td.versions = (None, published.version() if published is not None else None)
    td.note = (f"staged, not published: these rows are in {loc.uri}, compared with the published "
               f"content; `pdgen promote {run_id}` would publish them")
    if published is not None:
        _compare(td, published, content)
    else:
        td.new_keys = len(td.content)


def _load_committed(td: TaskData, content: storage.Location, run_id: str, version: int | None) -> None:
    """A published run's rows in ``content/<task>`` at the version it committed, compared with
    the version before it."""
    dt = _open(content, version)
    if dt is None:
        td.note = f"no content table at {content.uri}"
        return
    td.content = _rows(dt, content, run_id, _CONTENT_COLS)
    v = dt.version()
    td.versions = (v, v - 1 if v > 0 else None)
    if v > 0:
        _compare(td, _open(content, v - 1), content)
    else:
        td.new_keys = len(td.content)


def _load_task(root: storage.Location, run_id: str, task: str, tables: dict) -> TaskData:
    td = TaskData(task)
    if f"staged/{run_id}/{task}" in tables and f"content/{task}" not in tables:
        _load_staged(td, root, run_id)
    else:
        _load_committed(td, root.child("content", task), run_id, tables.get(f"content/{task}"))
    rj_loc = root.child("rejects", task)
    rj = _open(rj_loc, tables.get(f"rejects/{task}"))
    if rj is not None:
        # The variant tells a sku's budget blurb from its gift blurb: without it they look doubled.
        td.rejects = _rows(rj, rj_loc, run_id, ["sku", "locale", "variant", "stage", "reason", "detail"])
    return td


def load(output_uri: str, run_id: str) -> tuple[dict, list[TaskData]]:
    root = storage.resolve(output_uri)
    record = storage.read_json(root.child("runs", f"{run_id}.json"))
    counts = record.get("counts") or {}
    tasks = list((counts.get("by_task") or {}).keys()) or list((record.get("spec") or {}).get("tasks") or [])
    tables = record.get("tables") or {}
    return record, [_load_task(root, run_id, t, tables) for t in tasks]


# --- charts (inline SVG) ------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 or float(x).is_integer() else f"{x:,.2f}"


def bar_chart(items: Sequence[tuple[str, float]], label: str, width: int = 560) -> str:
    """Horizontal bars, one per (name, value), value printed at the bar's end."""
    if not items:
        return '<p class="empty">none</p>'
    row, left = 24, 180
    top = max(v for _, v in items) or 1
    h = row * len(items) + 8
    out = [f'<svg class="chart" role="img" aria-label="{e(label)}" width="{width}" height="{h}" '
           f'viewBox="0 0 {width} {h}">']
    for i, (name, v) in enumerate(items):
        y, w = 4 + i * row, max(1.0, (width - left - 60) * v / top)
        out.append(
            f'<g class="bar"><title>{e(name)}: {e(_fmt(v))}</title>'
            f'<text x="{left - 6}" y="{y + 15}" text-anchor="end">{e(name)}</text>'
            f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 6}"/>'
            f'<text class="val" x="{left + w + 4:.1f}" y="{y + 15}">{e(_fmt(v))}</text></g>'
        )
    return "".join(out) + "</svg>"


def histogram(values: Sequence[float], label: str, unit: str, width: int = 360, height: int = 170) -> str:
    """Vertical bars over up to 20 bins, with the range, count and median under the chart."""
    vals = np.asarray([v for v in values if v is not None], dtype=float)
    if vals.size == 0:
        return f'<figure><figcaption>{e(label)}</figcaption><p class="empty">no data</p></figure>'
    bins = int(min(20, max(1, np.unique(vals).size)))
    counts, edges = np.histogram(vals, bins=bins)
    pad, top_y, base = 28, 20, height - 30  # plot area: y from top_y (tallest bin) to base (axis)
    bw = (width - 2 * pad) / bins
    top = counts.max() or 1
    out = [f'<figure><figcaption>{e(label)}</figcaption>'
           f'<svg class="chart" role="img" aria-label="{e(label)}" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}">'
           f'<line class="axis" x1="{pad}" y1="{base}" x2="{width - pad}" y2="{base}"/>']
    for i, c in enumerate(counts):
        bh = (base - top_y) * c / top
        out.append(f'<rect x="{pad + i * bw + 1:.1f}" y="{base - bh:.1f}" width="{max(bw - 2, 1):.1f}" '
                   f'height="{bh:.1f}"><title>{e(_fmt(edges[i]))}–{e(_fmt(edges[i + 1]))} {e(unit)}: '
                   f'{int(c)} rows</title></rect>')
    out.append(f'<text x="{pad}" y="{base + 16}">{e(_fmt(edges[0]))}</text>'
               f'<text x="{width - pad}" y="{base + 16}" text-anchor="end">{e(_fmt(edges[-1]))} {e(unit)}</text>'
               f'<text x="{pad}" y="12">tallest bin: {int(top)} rows</text></svg>'
               f'<p class="stats">n={vals.size} · median {e(_fmt(float(np.median(vals))))} · '
               f'mean {e(_fmt(float(vals.mean())))} {e(unit)}</p></figure>')
    return "".join(out)


def line_chart(points: Sequence[tuple[float, float]], label: str, xunit: str, yunit: str,
               width: int = 560, height: int = 200) -> str:
    pad, ph = 44, height - 40
    xmax = max(p[0] for p in points) or 1
    ymax = max(p[1] for p in points) or 1
    xy = [(pad + (width - 2 * pad) * x / xmax, 8 + ph * (1 - y / ymax)) for x, y in points]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{e(_fmt(px))} {e(xunit)}: '
                   f'{e(_fmt(py))} {e(yunit)}</title></circle>' for (x, y), (px, py) in zip(xy, points))
    return (f'<figure><figcaption>{e(label)}</figcaption>'
            f'<svg class="chart" role="img" aria-label="{e(label)}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">'
            f'<line class="axis" x1="{pad}" y1="{ph + 8}" x2="{width - pad}" y2="{ph + 8}"/>'
            f'<line class="axis" x1="{pad}" y1="8" x2="{pad}" y2="{ph + 8}"/>'
            f'<polyline points="{path}"/>{dots}'
            f'<text x="{pad - 4}" y="16" text-anchor="end">{e(_fmt(ymax))}</text>'
            f'<text x="{pad - 4}" y="{ph + 8}" text-anchor="end">0</text>'
            f'<text x="{width - pad}" y="{ph + 24}" text-anchor="end">{e(_fmt(xmax))} {e(xunit)}</text>'
            f'</svg></figure>')


# --- sections -----------------------------------------------------------------------------------


def _word_diff(old: str, new: str) -> tuple[str, str]:
    """Both texts escaped, with removed words in <del> on the old side, added in <ins> on the new."""
    a, b = re.split(r"(\s+)", old), re.split(r"(\s+)", new)
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        o, n = e("".join(a[i1:i2])), e("".join(b[j1:j2]))
        if op == "equal":
            left.append(o), right.append(n)
        else:
            left.append(f"<del>{o}</del>" if o else "")
            right.append(f"<ins>{n}</ins>" if n else "")
    return "".join(left), "".join(right)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], table_id: str = "", cls: str = "") -> str:
    """``rows`` cells are HTML already escaped by the caller."""
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    ident = f' id="{e(table_id)}"' if table_id else ""
    return f'<table{ident} class="{e(cls)}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _cards(record: dict) -> str:
    c, tok, tm = record.get("counts") or {}, record.get("tokens") or {}, record.get("timing") or {}
    items = [("read", c.get("read")), ("accepted", c.get("accepted")), ("rejected", c.get("rejected")),
             ("unchanged", c.get("unchanged")), ("tokens in", tok.get("in")), ("tokens out", tok.get("out")),
             ("wall s", tm.get("wall_s")), ("rows/s", tm.get("rows_per_s")),
             ("output tokens/s", tm.get("output_tokens_per_s"))]
    return '<div class="cards">' + "".join(
        f'<div class="card" data-metric="{e(k)}"><span class="num">{e("–" if v is None else _fmt(v))}</span>'
        f'<span class="lbl">{e(k)}</span></div>' for k, v in items) + "</div>"


def _counts_table(record: dict, tasks: list[TaskData]) -> str:
    by_task = (record.get("counts") or {}).get("by_task") or {}
    rows = []
    for t in tasks:
        n = by_task.get(t.name) or {}
        a, r, u = n.get("accepted", len(t.content)), n.get("rejected", len(t.rejects)), n.get("unchanged", 0)
        rows.append([e(t.name), e(a), e(r), e(u), e(len(t.changed)), e(t.new_keys), e(a + r + u)])
    return _table(["task", "accepted", "rejected", "unchanged", "changed text", "new", "total"],
                  rows, "counts", "num")


def _throughput(record: dict) -> str:
    prog = sorted((float(p["t"]), float(p["rows"])) for p in record.get("progress") or []
                  if p.get("t") is not None and p.get("rows") is not None)
    if len(prog) < 2:
        return '<p class="empty">no progress samples in the run record</p>'
    rates = [(t1, (r1 - r0) / (t1 - t0)) for (t0, r0), (t1, r1) in zip(prog, prog[1:]) if t1 > t0]
    return ('<div class="row">' + line_chart(prog, "rows done over time", "s", "rows")
            + (line_chart(rates, "rows/s between samples", "s", "rows/s") if rates else "") + "</div>")


def _flags(flags: dict) -> str:
    """The input flags of the task's items (pii, html, injection, ...), as the run record counts
    them: every item the run generated, accepted or rejected, once."""
    items = sorted(((str(k), int(v)) for k, v in (flags or {}).items()), key=lambda kv: (-kv[1], kv[0]))
    return (f'<h3>input flags</h3><p class="meta">catalog fields cleaned or flagged, per item '
            f'generated (accepted or rejected)</p><div class="flags">{bar_chart(items, "input flags")}</div>')


def _task_section(t: TaskData, reasons_recorded: dict, flags: dict | None = None) -> str:
    slug = re.sub(r"[^a-zA-Z0-9_-]", "-", t.name)
    reasons: dict[str, int] = {}
    for r in t.rejects:
        reasons[str(r.get("reason"))] = reasons.get(str(r.get("reason")), 0) + 1
    reasons = reasons or {str(k): int(v) for k, v in (reasons_recorded or {}).items()}
    items = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    v, pv = t.versions
    retried = sum(1 for r in t.content if (r.get("attempts") or 1) > 1)
    parts = [f'<section class="task" id="task-{e(slug)}"><h2>task <code>{e(t.name)}</code></h2>',
             f'<p class="meta">content version {e("–" if v is None else v)}, compared with version '
             f'{e("–" if pv is None else pv)} · {len(t.content)} rows written by this run · '
             f'{retried} needed more than one attempt</p>']
    if t.note:
        parts.append(f'<p class="note">{e(t.note)}</p>')
    parts.append(f'<h3>reject reasons</h3><div class="reasons">{bar_chart(items, "reject reasons")}</div>')
    parts.append(_flags(flags or {}))
    parts.append('<h3>distributions</h3><div class="row">'
                 + histogram([r.get("tokens_in") for r in t.content], "prompt tokens per row", "tokens")
                 + histogram([r.get("tokens_out") for r in t.content], "output tokens per row", "tokens")
                 + histogram([len(r.get("text") or "") for r in t.content], "text length", "chars")
                 + "</div>")
    shown = sorted(t.changed, key=lambda c: _key(c[0]))[:MAX_ROWS]
    rows = []
    for row, old in shown:
        o, n = _word_diff(old, row.get("text") or "")
        rows.append([f"<code>{e(row.get('sku'))}</code>", e(row.get("locale")),
                     f'<div class="txt old">{o}</div>', f'<div class="txt new">{n}</div>'])
    parts.append(f'<h3>changed texts ({len(t.changed)})</h3>')
    if rows:
        tid = f"changed-{slug}"
        parts.append(f'<input class="filter" type="search" placeholder="filter by sku or text" '
                     f'data-table="{e(tid)}" aria-label="filter changed rows">')
        parts.append(_table(["sku", "locale", f"previous text (version {pv})", f"this run (version {v})"],
                            rows, tid, "changed"))
        if len(t.changed) > MAX_ROWS:
            parts.append(f'<p class="more">{len(t.changed) - MAX_ROWS} more not shown</p>')
    else:
        parts.append('<p class="empty">no text changed against the previous version</p>')
    if t.rejects:
        rj = [[f"<code>{e(r.get('sku'))}</code>", e(r.get("locale")), e(r.get("variant") or "–"),
               e(r.get("stage")), e(r.get("reason")), f'<div class="txt">{e(r.get("detail"))}</div>']
              for r in sorted(t.rejects, key=_key_sort)[:MAX_ROWS]]
        parts.append(f"<h3>rejected rows ({len(t.rejects)})</h3>"
                     + _table(["sku", "locale", "variant", "stage", "reason", "detail"], rj, f"rejects-{slug}",
                              "rejects"))
    return "".join(parts) + "</section>"


CSS = """
:root{--fg:#1d2330;--mut:#5b6475;--bg:#fff;--acc:#3867d6;--bd:#dde2ea}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);
 margin:0 auto;max-width:1180px;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;border-bottom:1px solid var(--bd);padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin:18px 0 6px}.meta,.stats,.more,.empty,.note,footer{color:var(--mut)}
.note{color:#a33}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}
.card{border:1px solid var(--bd);border-radius:8px;padding:8px 14px;min-width:96px}
.card .num{display:block;font-size:20px;font-weight:600}.card .lbl{color:var(--mut);font-size:12px}
table{border-collapse:collapse;width:100%;margin:6px 0}th,td{border-bottom:1px solid var(--bd);padding:5px 8px;
 text-align:left;vertical-align:top}th{background:#f4f6fa;font-weight:600}table.num td+td{font-variant-numeric:tabular-nums}
.txt{white-space:pre-wrap;word-break:break-word;max-width:520px}del{background:#fde2e1;color:#8a1c1c}
ins{background:#dcf5e3;color:#16532e;text-decoration:none}.row{display:flex;flex-wrap:wrap;gap:18px}
figure{margin:0}figcaption{font-weight:600;margin-bottom:2px}svg.chart text{font-size:11px;fill:var(--fg)}
svg.chart rect{fill:var(--acc)}svg.chart .axis{stroke:#99a}svg.chart polyline{fill:none;stroke:var(--acc);stroke-width:2}
svg.chart circle{fill:var(--acc)}input.filter{padding:4px 8px;width:280px;margin:4px 0}
"""

SCRIPT = """
for (const box of document.querySelectorAll("input.filter")) {
  box.addEventListener("input", () => {
    const q = box.value.toLowerCase();
    for (const tr of document.querySelectorAll("#" + box.dataset.table + " tbody tr"))
      tr.hidden = q !== "" && !tr.textContent.toLowerCase().includes(q);
  });
}
"""


def render(record: dict, tasks: list[TaskData], source: str) -> str:
    run_id = record.get("run_id", "")
    model = record.get("model") or {}
    reasons = (record.get("counts") or {}).get("rejects_by_reason") or {}
    flags = (record.get("counts") or {}).get("input_flags") or {}
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    meta = " · ".join(e(x) for x in (record.get("name"), record.get("status"), record.get("mode")) if x)
    when = f"{e(record.get('started_at', '?'))} → {e(record.get('finished_at', '?'))}"
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "".join([
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{e(csp)}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>pdgen run {e(run_id)}</title><style>{CSS}</style></head><body>",
        f'<header><h1>pdgen run <code id="run-id">{e(run_id)}</code></h1>',
        f'<p class="meta">{meta} · {when}<br>model <code>{e(model.get("identity") or model.get("source"))}'
        f"</code></p></header>",
        f'<section id="summary">{_cards(record)}<h2>counts by task and outcome</h2>'
        f"{_counts_table(record, tasks)}</section>",
        f'<section id="throughput"><h2>throughput</h2>{_throughput(record)}</section>',
        *(_task_section(t, reasons.get(t.name) or {}, flags.get(t.name) or {}) for t in tasks),
        f"<footer><p>from <code>{e(source)}</code> · built {now}</p></footer>",
        f"<script>{SCRIPT}</script></body></html>",
    ])


def build_report(output_uri: str, run_id: str, out_path: str) -> Path:
    """Write the HTML report of ``run_id`` under ``output_uri`` to ``out_path``; return its path."""
    record, tasks = load(output_uri, run_id)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(record, tasks, storage.resolve(output_uri).uri), encoding="utf-8")
    return out

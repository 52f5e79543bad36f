"""The review app's Jinja2 templates. Autoescape is on for every template: catalog and generated
text is data, shown as text (the hostile corpus tests it). No scripts: the CSP forbids them."""

from __future__ import annotations

from jinja2 import DictLoader, Environment

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{% block title %}pdgen review{% endblock %}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#1d2433;color:#fff;padding:10px 24px}header a{color:#fff;text-decoration:none}
main{padding:16px 24px;max-width:1280px}
table{border-collapse:collapse;background:#fff;width:100%;margin:8px 0 16px}
th,td{border-bottom:1px solid #e3e6eb;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4;font-weight:600}
.box{background:#fff;border:1px solid #e3e6eb;border-radius:6px;padding:10px 14px;margin:10px 0}
.side{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.text{white-space:pre-wrap;background:#fff;border:1px solid #e3e6eb;border-radius:6px;padding:10px;min-height:40px}
del{background:#ffd7d5;text-decoration:line-through}ins{background:#ccf2d1;text-decoration:none}
.tag{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;background:#e8ecf3;margin-right:4px}
.tag.border{background:#fff1c2}.tag.approve{background:#ccf2d1}.tag.reject{background:#ffd7d5}.tag.edit{background:#dbe7ff}
form.decide{display:grid;grid-template-columns:auto 1fr;gap:8px;align-items:start}
textarea{width:100%;min-height:90px;font:inherit}input[type=text]{width:100%}
button{padding:5px 14px;font:inherit;cursor:pointer}
.meta{color:#5b6473}
</style></head><body>
<header><a href="/">pdgen review</a> &middot; {{ output }} &middot; reviewer <b>{{ reviewer }}</b></header>
<main>{% block main %}{% endblock %}</main></body></html>"""

_RUNS = """{% extends "base.html" %}{% block main %}
<h1>Staged runs</h1>
{% if not runs %}<p>No staged run waits for review under {{ output }}.</p>{% endif %}
<table id="runs"><thead><tr><th>run</th><th>name</th><th>started</th><th>tasks</th></tr></thead><tbody>
{% for r in runs %}<tr><td><a href="/runs/{{ r.run_id | urlencode }}">{{ r.run_id }}</a></td><td>{{ r.name }}</td>
<td>{{ r.started_at }}</td><td>{{ r.tasks | join(", ") }}</td></tr>{% endfor %}
</tbody></table>{% endblock %}"""

_QUEUE = """{% extends "base.html" %}{% block title %}review {{ run_id }}{% endblock %}{% block main %}
<h1>Run {{ run_id }}</h1>
<p class="meta">{{ record.name }} &middot; started {{ record.started_at }} &middot; status {{ record.status }}</p>
{% for task, s in summary.items() %}
<section class="task" id="task-{{ task }}">
<h2>{{ task }}</h2>
<div class="box bounds">
<p>The random sample ({{ s.sample }} of {{ s.rows }} rows, per locale) is sized so that if a reviewer finds
no defect in it, the <b>defect rate</b> of this task's proposed rows (the share a reviewer would reject) is
below <b>{{ "%.1f" | format(target * 100) }}%</b> with 95% confidence (exact binomial / Clopper-Pearson bound;
{% if limit is none %}the spec sets no <code>output.max_defect_rate</code>, so 5% is the target{% else %}<code>output.max_defect_rate</code> is {{ limit }}{% endif %}).
Borderline rows (retried, trimmed at max_tokens, flagged inputs) are queued too, but do not count in the sample.</p>
<p>Sample reviewed: <b data-k="reviewed">{{ s.sample_reviewed }}</b> of {{ s.sample }}, rejected <b data-k="sample-rejected">{{ s.sample_rejected }}</b>;
{% if s.upper_bound is none %}no bound yet.{% else %}defect rate at most <b data-k="bound">{{ "%.1f" | format(s.upper_bound * 100) }}%</b> (95% upper bound).{% endif %}
Decisions: {{ s.approved }} approved, {{ s.edited }} edited, {{ s.rejected }} rejected.</p>
<p>Promote now publishes: <b data-k="mode">{% if s.mode == "all" %}all rows except the rejected ones (the sample bounds the defect rate under {{ limit }}){% else %}only the approved and edited rows{% endif %}</b>.</p>
</div>
{% for q in queues[task] %}
<h3>{{ task }} / {{ q.locale }}: {{ q.keys | length }} to review ({{ q.sample | length }} sampled of {{ q.population }}, {{ q.borderline | length }} borderline)</h3>
<table class="queue" data-task="{{ task }}" data-locale="{{ q.locale }}"><thead><tr><th>sku</th><th>variant</th><th>why</th><th>decision</th><th>proposed</th></tr></thead><tbody>
{% for k in q.keys %}{% set d = decided[task].get(k) %}{% set row = rows[task][k] %}
<tr data-sku="{{ k[0] }}"><td><a href="/runs/{{ run_id | urlencode }}/{{ task }}/row?sku={{ k[0] | urlencode }}&amp;locale={{ k[1] | urlencode }}&amp;variant={{ k[2] | urlencode }}">{{ k[0] }}</a></td>
<td>{{ k[2] }}</td><td>{% if k in q.sample %}<span class="tag">sample</span>{% endif %}{% for w in q.borderline.get(k, []) %}<span class="tag border">{{ w }}</span>{% endfor %}</td>
<td>{% if d %}<span class="tag {{ d.decision }}">{{ d.decision }}</span>{% else %}-{% endif %}</td>
<td>{{ row.text | truncate(120) }}</td></tr>{% endfor %}
</tbody></table>
{% endfor %}</section>{% endfor %}
<form method="post" action="/runs/{{ run_id | urlencode }}/promote" class="box">
<input type="hidden" name="csrf" value="{{ csrf }}">
<button type="submit" id="promote">Promote run {{ run_id }}</button>
<span class="meta">merges the rows above as one version per task (<code>pdgen promote</code>); rejected rows go to the rejects table as <code>review_rejected</code>.</span>
</form>{% endblock %}"""

_ROW = """{% extends "base.html" %}{% block title %}{{ key[0] }} &middot; {{ task }}{% endblock %}{% block main %}
<p><a href="/runs/{{ run_id | urlencode }}">&larr; queue of run {{ run_id }}</a></p>
<h1>{{ task }} &middot; <span id="sku">{{ key[0] }}</span> <span class="meta">[{{ key[1] }}{% if key[2] %}, {{ key[2] }}{% endif %}]</span></h1>
{% if decision %}<p>Decision: <span class="tag {{ decision.decision }}" id="decision">{{ decision.decision }}</span> by {{ decision.reviewer }} at {{ decision.decided_at }}{% if decision.reason %}: {{ decision.reason }}{% endif %}</p>{% endif %}
<h2>Facts</h2>
<table id="facts"><tbody>{% for k, v in facts %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</tbody></table>
<h2>Text</h2>
<div class="side">
<div><h3>Published{% if old is none %} (none yet){% endif %}</h3><div class="text" id="published">{{ old.text if old else "" }}</div></div>
<div><h3>Proposed</h3><div class="text" id="proposed">{{ row.text }}</div></div>
</div>
<h3>Word diff</h3>
<div class="text" id="diff">{% for op, t in diff %}{% if op == "delete" %}<del>{{ t }}</del>{% elif op == "insert" %}<ins>{{ t }}</ins>{% else %}{{ t }}{% endif %}{% endfor %}</div>
<h2>Decide</h2>
<form method="post" action="/runs/{{ run_id | urlencode }}/{{ task }}/decide" class="box decide" id="decide">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="sku" value="{{ key[0] }}"><input type="hidden" name="locale" value="{{ key[1] }}">
<input type="hidden" name="variant" value="{{ key[2] }}"><input type="hidden" name="fp" value="{{ fp }}">
<label for="reason">reason (reject)</label><input type="text" name="reason" id="reason">
<label for="text">edited text</label><textarea name="text" id="text">{{ row.text }}</textarea>
<span></span><span><button name="decision" value="approve" id="approve">Approve</button>
<button name="decision" value="reject" id="reject">Reject</button>
<button name="decision" value="edit" id="edit">Save edit</button></span>
</form>
<h2>Guard history</h2>
<table id="guard"><tbody>
<tr><th>attempts</th><td>{{ row.attempts }}</td></tr>
<tr><th>previous attempt rejected for</th><td>{{ row.retry_reason or "-" }}</td></tr>
<tr><th>finish</th><td>{{ row.finish_reason or "-" }}</td></tr>
<tr><th>input flags</th><td>{{ row.input_flags or "-" }}</td></tr>
<tr><th>borderline</th><td>{{ why | join("; ") or "no" }}</td></tr>
</tbody></table>
<h3>Earlier rejects of this row</h3>
<table id="rejects"><thead><tr><th>run</th><th>stage</th><th>reason</th><th>detail</th><th>at</th></tr></thead><tbody>
{% for r in rejects %}<tr><td>{{ r.run_id }}</td><td>{{ r.stage }}</td><td>{{ r.reason }}</td><td>{{ r.detail }}</td><td>{{ r.rejected_at }}</td></tr>{% else %}<tr><td colspan="5">none</td></tr>{% endfor %}
</tbody></table>
<h2>Lineage</h2>
<table id="lineage"><thead><tr><th></th><th>published</th><th>proposed</th></tr></thead><tbody>
{% for c in lineage_cols %}<tr><th>{{ c }}</th><td>{{ old[c] | show if old else "" }}</td><td>{{ row[c] | show }}</td></tr>{% endfor %}
</tbody></table>{% endblock %}"""

_DONE = """{% extends "base.html" %}{% block main %}
<h1>Run {{ run_id }} published</h1>
<table id="published"><thead><tr><th>task</th><th>version</th><th>mode</th><th>rows published</th><th>rejected</th></tr></thead><tbody>
{% for task, v in result.versions.items() %}{% set s = result.review[task] %}<tr><td>{{ task }}</td><td>{{ v }}</td><td data-k="mode">{{ s.mode }}</td><td>{{ s.published_rows }}</td><td>{{ s.rejected }}</td></tr>{% endfor %}
</tbody></table><p><a href="/">staged runs</a></p>{% endblock %}"""

_ERROR = """{% extends "base.html" %}{% block main %}<h1>{{ status }}</h1><p id="error">{{ message }}</p>{% endblock %}"""

ENV = Environment(loader=DictLoader({"base.html": _BASE, "runs.html": _RUNS, "queue.html": _QUEUE,
                                     "row.html": _ROW, "done.html": _DONE, "error.html": _ERROR}),
                  autoescape=True)
# A null shows as "-" (a null ``lineage`` is model text).
ENV.filters["show"] = lambda v: "-" if v is None or v == "" else v

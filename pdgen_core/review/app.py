"""The review web app (Starlette, server-rendered Jinja2 pages, no scripts).

Safety on a shared host:

- It binds 127.0.0.1 unless told otherwise; any other address needs a token (``check_bind``).
  With a token, every request must carry it: ``?token=`` once (it becomes an HttpOnly,
  SameSite=Strict cookie), the cookie, or ``Authorization: Bearer``.
- On a loopback bind the Host header must be a loopback name (DNS rebinding).
- Forms are CSRF-safe: each carries an HMAC of the browser's session cookie (SameSite=Strict,
  HttpOnly) under a per-process secret, and a POST whose Origin is another site is refused.
- Every page is autoescaped Jinja2 (``pages``), under a CSP with no script source at all.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from pdgen_core import run_record, versions
from pdgen_core.errors import InputError
from pdgen_core.review import decisions as dec
from pdgen_core.review import publish, queue, stats
from pdgen_core.review.pages import ENV

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
SESSION, TOKEN = "pdgen_review_session", "pdgen_review_token"
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
LINEAGE = ["input_fingerprint", "template", "model", "adapter", "sampling_hash", "run_id",
           "generated_at", "lineage", "tokens_in", "tokens_out"]


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token (exit 2, with the fix)."""
    if not is_loopback(host) and not token:
        raise InputError(f"--host {host} is reachable from other machines: give a token "
                         "(--token, or PDGEN_REVIEW_TOKEN) that every request must carry, or bind 127.0.0.1")
    if token is not None and len(token) < 16:
        raise InputError("the review token must be at least 16 characters (try `python -c "
                         "\"import secrets; print(secrets.token_urlsafe(24))\"`)")


class ReviewApp:
    """What the routes share: the output, the reviewer, the secrets."""

    def __init__(self, output_uri: str, reviewer: str, run_id: str | None = None,
                 token: str | None = None, allow_older: bool = False):
        self.output, self.reviewer, self.only_run, self.token = output_uri, reviewer, run_id, token
        self.allow_older = allow_older
        self.secret = secrets.token_bytes(32)

    # -- security ---------------------------------------------------------------------------
    def csrf(self, request: Request) -> str:
        sid = request.cookies.get(SESSION) or request.state.new_session
        return hmac.new(self.secret, sid.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, request: Request) -> bool:
        if self.token is None:
            return True
        auth = request.headers.get("authorization", "")
        given = [request.query_params.get("token"), request.cookies.get(TOKEN),
                 auth[7:] if auth.lower().startswith("bearer ") else None]
        return any(g is not None and hmac.compare_digest(g.encode(), self.token.encode()) for g in given)

    async def checked_form(self, request: Request):
        """The POSTed form, or None when its CSRF token or Origin is wrong."""
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host')}":
            return None
        if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
            return None
        form = await request.form()
        sid = request.cookies.get(SESSION)
        want = hmac.new(self.secret, (sid or "").encode(), hashlib.sha256).hexdigest()
        if not sid or not hmac.compare_digest(str(form.get("csrf", "")), want):
            return None
        return form

    # -- data -------------------------------------------------------------------------------
    def runs(self) -> list[str]:
        runs = run_record.promotable_runs(self.output)
        return [r for r in runs if self.only_run in (None, r)]

    def record(self, run_id: str) -> dict:
        if run_id not in self.runs():  # only listed runs: an id is never a path from the URL
            raise LookupError(f"no staged run {run_id!r} under {self.output}")
        return run_record.read_record(self.output, run_id) or {}

    def task(self, rec: dict, task: str) -> str:
        if task not in versions.staged_tasks(rec):
            raise LookupError(f"run {rec.get('run_id')} stages no task {task!r}")
        return task

    def render(self, request: Request, name: str, code: int = 200, **ctx) -> HTMLResponse:
        html = ENV.get_template(name).render(output=self.output, reviewer=self.reviewer,
                                             csrf=self.csrf(request), **ctx)
        return HTMLResponse(html, status_code=code)

    # -- pages ------------------------------------------------------------------------------
    async def index(self, request: Request):
        rows = []
        for r in self.runs():
            rec = run_record.read_record(self.output, r) or {}
            rows.append({"run_id": r, "name": rec.get("name"), "started_at": rec.get("started_at"),
                         "tasks": versions.staged_tasks(rec)})
        return self.render(request, "runs.html", runs=rows)

    async def run_page(self, request: Request):
        run_id = request.path_params["run_id"]
        rec = self.record(run_id)
        limit = publish.max_defect_rate(rec)
        tasks = versions.staged_tasks(rec)
        queues = {t: queue.build(self.output, run_id, t, limit) for t in tasks}
        rows = {t: {queue.key_of(r): r for r in queue.staged_rows(self.output, run_id, t)} for t in tasks}
        decided = {t: publish.valid_decisions(self.output, run_id, t) for t in tasks}
        summary = {t: publish.task_summary(self.output, run_id, t, limit) for t in tasks}
        return self.render(request, "queue.html", run_id=run_id, record=rec, queues=queues, rows=rows,
                           decided=decided, summary=summary, limit=limit, target=limit or stats.DEFAULT_TARGET)

    def _key(self, source) -> tuple:
        return (str(source.get("sku", "")), str(source.get("locale", "")), str(source.get("variant", "")))

    async def row_page(self, request: Request):
        run_id = request.path_params["run_id"]
        rec = self.record(run_id)
        task = self.task(rec, request.path_params["task"])
        key = self._key(request.query_params)
        rows = {queue.key_of(r): r for r in queue.staged_rows(self.output, run_id, task)}
        if key not in rows:
            raise LookupError(f"run {run_id} proposes no {task} row for {key}")
        row = rows[key]
        old = queue.published(self.output, task, [key[0]]).get(key)
        lim = publish.max_defect_rate(rec)
        why = next((q.borderline.get(key, []) for q in queue.build(self.output, run_id, task, lim)
                    if q.locale == key[1]), [])
        return self.render(request, "row.html", run_id=run_id, task=task, key=key, row=row, old=old,
                           facts=queue.facts(row), diff=queue.word_diff(old["text"] if old else "", row["text"]),
                           fp=dec.text_fingerprint(row["text"]), why=why,
                           decision=publish.valid_decisions(self.output, run_id, task).get(key),
                           rejects=queue.past_rejects(self.output, task, key), lineage_cols=LINEAGE)

    async def decide(self, request: Request):
        form = await self.checked_form(request)
        if form is None:
            return self.render(request, "error.html", 403, status="403 Forbidden",
                               message="the form's CSRF token or origin is wrong: reload the page and try again")
        run_id = request.path_params["run_id"]
        rec = self.record(run_id)
        task = self.task(rec, request.path_params["task"])
        key = self._key(form)
        rows = {queue.key_of(r): r for r in queue.staged_rows(self.output, run_id, task)}
        decision = str(form.get("decision", ""))
        if key not in rows or decision not in dec.DECISIONS:
            return self.render(request, "error.html", 400, status="400 Bad Request",
                               message=f"no such row or decision: {key} {decision!r}")
        row = rows[key]
        fp = dec.text_fingerprint(row["text"])
        if str(form.get("fp")) != fp:
            return self.render(request, "error.html", 409, status="409 Conflict",
                               message="the proposed text changed since the page was shown: reload it")
        edited = str(form.get("text") or "").replace("\r\n", "\n").strip() if decision == "edit" else None
        if decision == "edit" and (not edited or edited == row["text"]):
            return self.render(request, "error.html", 400, status="400 Bad Request",
                               message="an edit needs a text that differs from the proposed one (or approve it)")
        lim = publish.max_defect_rate(rec)
        sample = {k for q in queue.build(self.output, run_id, task, lim) for k in q.sample}
        dec.record(self.output, task, run_id=run_id, sku=key[0], locale=key[1], variant=key[2],
                   decision=decision, reason=str(form.get("reason") or "") or None, edited_text=edited,
                   text_fingerprint=fp, input_fingerprint=row["input_fingerprint"],
                   in_sample=key in sample, reviewer=self.reviewer)
        return RedirectResponse(f"/runs/{quote(run_id)}#task-{task}", status_code=303)

    async def promote(self, request: Request):
        form = await self.checked_form(request)
        if form is None:
            return self.render(request, "error.html", 403, status="403 Forbidden",
                               message="the form's CSRF token or origin is wrong: reload the page and try again")
        run_id = request.path_params["run_id"]
        self.record(run_id)
        try:
            result = publish.publish_reviewed(self.output, run_id, allow_older=self.allow_older)
        except InputError as exc:
            return self.render(request, "error.html", 409, status="409 Conflict", message=str(exc))
        return self.render(request, "done.html", run_id=run_id, result=result)


def create_app(output_uri: str, reviewer: str, run_id: str | None = None, token: str | None = None,
               host: str = "127.0.0.1", allow_older: bool = False) -> Starlette:
    """The Starlette app; ``host`` is the address it will bind (the Host check follows it)."""
    check_bind(host, token)
    ra = ReviewApp(output_uri, reviewer, run_id, token, allow_older)

    def wrap(fn):
        async def endpoint(request: Request):
            try:
                return await fn(request)
            except LookupError as exc:
                return ra.render(request, "error.html", 404, status="404 Not Found", message=str(exc))
        return endpoint

    async def guard(request: Request, call_next):
        request.state.new_session = secrets.token_urlsafe(24)
        if not ra.token_ok(request):
            return Response("a token is required: open the URL `pdgen review` printed", status_code=401,
                            media_type="text/plain")
        response = await call_next(request)
        if SESSION not in request.cookies:
            response.set_cookie(SESSION, request.state.new_session, httponly=True, samesite="strict")
        if ra.token is not None and request.query_params.get("token"):
            response.set_cookie(TOKEN, ra.token, httponly=True, samesite="strict")
        response.headers.update({"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
                                 "Cache-Control": "no-store"})
        return response

    hosts = list(LOOPBACK_NAMES) if is_loopback(host) else ["*"]
    return Starlette(routes=[
        Route("/", wrap(ra.index)),
        Route("/runs/{run_id}", wrap(ra.run_page)),
        Route("/runs/{run_id}/{task}/row", wrap(ra.row_page)),
        Route("/runs/{run_id}/{task}/decide", wrap(ra.decide), methods=["POST"]),
        Route("/runs/{run_id}/promote", wrap(ra.promote), methods=["POST"]),
    ], middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts),
                   Middleware(BaseHTTPMiddleware, dispatch=guard)])

"""``/console``: server-rendered pages to look at what the engine serves before trusting it.

* ``/console``: the live version (id, age, models, list counts, default model and why,
  catalogue size), the retained versions with a rollback button, the run's step times,
  validation report and offline metrics (table and bar chart), warnings, and
  the live version's customer segments (name, size, share) and the published audiences;
* ``/console/users?user_id=``: the user's segment, recent events, A/B routing, and their list from
  every published model side by side (titles, categories, prices, scores, fallback marked);
* ``/console/items?item_id=``: catalogue fields, similar items per model, bought-together
  with confidence and lift;
* ``/console/experiments``: the experiments' reports.

Closed like the admin API: 404 when ``RECSYS_ADMIN_TOKEN`` is unset; otherwise an
``Authorization: Bearer`` header or the cookie that ``POST /console/login`` sets (an HMAC of
the token, never the token, HttpOnly, SameSite=Strict, path /console). Forms that change
state (rollback, logout) carry a CSRF token derived from the admin token. Tokens never
appear in a URL. No JavaScript: plain HTML, inline SVG charts, a strict CSP.
"""

from __future__ import annotations

import math
import time
from html import escape
from typing import Any

import orjson
import redis
from flask import Blueprint, Response, make_response, redirect, render_template, request
from markupsafe import Markup

from recsys.abtest.experiments import ExperimentStore
from recsys.errors import RecsysError
from recsys.marketing.audiences import list_audiences
from recsys.publish.versions import list_versions, rollback
from recsys.store.keys import KeyLayout
from serving import services
from serving.admin import admin_token, bearer_token, token_matches
from serving.errors import NOT_FOUND_MESSAGE, error_response
from serving.pages import MAX_LOGIN_BYTES, secure, set_login_cookie, signed

COOKIE = "recsys_console"
LIST_N = 10
EVENTS_SCANNED = 2000
EVENTS_SHOWN = 25
STALE_AFTER_SECONDS = 2 * 24 * 3600
DROPPED_WARN_SHARE = 0.05

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")


# ------------------------------------------------------------------ access
def cookie_value(token: str) -> str:
    """What the login cookie holds: an HMAC of the admin token."""
    return signed(token, b"recsys-console-v1")


def csrf_token(token: str) -> str:
    return signed(token, b"recsys-console-csrf-v1")




def _not_found() -> Response:
    """Admin off: the same plain 404 as any unknown URL."""
    return error_response(404, NOT_FOUND_MESSAGE)


def _login(status: int, message: str) -> Response:
    return secure(make_response(render_template("console/login.html", message=message), status))


@bp.before_request
def _require_admin() -> Response | None:
    expected = admin_token()
    if expected is None:
        return _not_found()
    if request.endpoint == "console.login":
        return None
    if token_matches(bearer_token(), expected) or token_matches(request.cookies.get(COOKIE), cookie_value(expected)):
        if request.method == "POST" and not token_matches(request.form.get("csrf"), csrf_token(expected)):
            return secure(make_response(render_template("console/message.html", title="Refused",
                                                         message="The form is stale or came from another site."), 403))
        return None
    return _login(401, "The console needs the admin token.")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response:
    expected = admin_token()
    assert expected is not None
    if request.method == "GET":
        return _login(200, "")
    if (request.content_length or 0) > MAX_LOGIN_BYTES:
        return _login(413, "That request is too large.")
    if not token_matches(request.form.get("token"), expected):
        return _login(401, "That token is not the admin token.")
    return set_login_cookie(redirect("/console", code=303), COOKIE, cookie_value(expected), "/console")


@bp.post("/logout")
def logout() -> Response:
    response = redirect("/console/login", code=303)
    response.delete_cookie(COOKIE, path="/console")
    return secure(response)


def _page(template: str, **context: Any) -> Response:
    started = time.perf_counter()
    body = render_template(
        template, csrf=csrf_token(admin_token() or ""), fmt_age=fmt_age, fmt_time=fmt_time,
        fmt_score=fmt_score, fmt_price=fmt_price, **context,
    )
    response = secure(make_response(body, 200))
    response.headers["Server-Timing"] = f"render;dur={1000 * (time.perf_counter() - started):.1f}"
    return response


# ------------------------------------------------------------------ data
def _client() -> redis.Redis:
    return services().client


def _layout() -> KeyLayout:
    return services().layout


def _meta(client: redis.Redis, layout: KeyLayout, version: str) -> dict[str, Any]:
    raw = client.get(layout.meta(version))
    if raw is None:
        return {}
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def _live(client: redis.Redis, layout: KeyLayout) -> tuple[str | None, dict[str, Any]]:
    raw = client.get(layout.live)
    if raw is None:
        return None, {}
    version = raw.decode()
    return version, _meta(client, layout, version)


def _experiments() -> list[Any]:
    try:
        return list(reversed(ExperimentStore(_client(), _layout()).list()))
    except RecsysError:
        return []


def summary(meta: dict[str, Any]) -> dict[str, Any]:
    """The run summary the publisher stores in the version's metadata (empty when absent)."""
    value = meta.get("run_summary")
    return value if isinstance(value, dict) else {}


def warnings_for(meta: dict[str, Any], published_at: float | None, experiments: list[Any], now: float) -> list[str]:
    """What an operator should look at: stale training, broken experiments, dropped rows."""
    out = []
    if published_at is not None and now - published_at > STALE_AFTER_SECONDS:
        out.append(f"the live version was published {fmt_age(now - published_at)} ago: is the retraining job running?")
    for experiment in experiments:
        broken = getattr(experiment, "broken", None)
        if broken:
            out.append(f"experiment {experiment.name} is broken ({broken}): its users get the default model")
    validation = summary(meta).get("validation") or {}
    rows = validation.get("rows") or 0
    dropped = sum((validation.get("dropped") or {}).values())
    if rows and dropped / rows > DROPPED_WARN_SHARE:
        out.append(f"the training run dropped {dropped:,} of {rows:,} input rows ({100 * dropped / rows:.1f}%)")
    out.extend(str(w) for w in validation.get("warnings") or [])
    for name, reason in (summary(meta).get("skipped") or {}).items():
        out.append(f"model {name} was not trained: {reason}")
    return out


def offline_metrics(meta: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """(metric names, one row per model) from the run's selection or holdout evaluation."""
    rows: list[dict[str, Any]] = []
    selection = meta.get("selection") or {}
    table = selection.get("candidates") or []
    if isinstance(table, list) and table:
        metric = str(selection.get("metric") or "value")
        for entry in table:
            if isinstance(entry, dict) and "model" in entry:
                values = {metric: entry.get("value"), "fit seconds": entry.get("fit_seconds")}
                values = {k: v for k, v in values.items() if isinstance(v, (int, float))}
                rows.append({"model": entry["model"], "chosen": bool(entry.get("chosen")), "values": values})
    else:
        evaluation = (summary(meta).get("evaluation") or meta.get("evaluation") or {}).get("models") or {}
        for model, values in evaluation.items():
            if isinstance(values, dict):
                numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                rows.append({"model": model, "chosen": model == meta.get("default_model"), "values": numbers})
    names: list[str] = []
    for row in rows:
        names.extend(n for n in row["values"] if n not in names)
    return names, rows


def bar_chart(rows: list[dict[str, Any]], metric: str, width: int = 520) -> Markup:
    """Inline SVG: one horizontal bar per model for ``metric``; the served model darker."""
    values = [(r["model"], r["values"].get(metric), r["chosen"]) for r in rows if isinstance(r["values"].get(metric), (int, float))]
    if not values:
        return Markup("")
    bar, gap, left = 20, 6, 110
    height = len(values) * (bar + gap) + 24
    top = max(v for _, v, _ in values) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(metric)} per model" font-family="system-ui, sans-serif" font-size="12">'
    ]
    for i, (model, value, chosen) in enumerate(values):
        y = 4 + i * (bar + gap)
        length = (width - left - 70) * (value / top if top > 0 and math.isfinite(value) else 0)
        color = "#1c5d99" if chosen else "#8fb3d9"
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{escape(str(model))}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{max(length, 1):.1f}" height="{bar}" fill="{color}" rx="2"/>')
        parts.append(f'<text x="{left + length + 6:.1f}" y="{y + 14}">{value:.4g}</text>')
    parts.append(f'<text x="{left}" y="{height - 4}" fill="#5c6873">{escape(metric)}</text></svg>')
    return Markup("".join(parts))


def segment_rows(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The version's segments (id, name, customers, share of the customers in a segment);
    empty for a version without segments. Sizes are None when the version did not record them."""
    names = meta.get("segments")
    if not isinstance(names, dict) or not names:
        return []
    sizes = meta.get("segment_sizes") if isinstance(meta.get("segment_sizes"), dict) else {}
    total = sum(v for v in sizes.values() if isinstance(v, int | float))
    details = meta.get("segment_details") if isinstance(meta.get("segment_details"), dict) else {}
    rows = []
    for segment, name in names.items():
        size = sizes.get(segment)
        size = int(size) if isinstance(size, int | float) else None
        detail = details.get(segment) if isinstance(details.get(segment), dict) else {}
        centroid = detail.get("centroid") if isinstance(detail.get("centroid"), dict) else {}
        top = detail.get("top_categories") if isinstance(detail.get("top_categories"), list) else []
        rows.append({"id": str(segment), "name": str(name), "size": size,
                     "share": size / total if size is not None and total else None,
                     "centroid": {k: v for k, v in centroid.items() if isinstance(v, int | float)},
                     "top_categories": [t for t in top if isinstance(t, dict) and "category" in t]})
    return sorted(rows, key=lambda r: (-(r["size"] or 0), r["id"]))


def user_segment(client: redis.Redis, layout: KeyLayout, version: str, meta: dict[str, Any], user_id: str) -> str | None:
    """The user's segment name in ``version`` (keys.py ``segment-of``), None outside every
    segment or for a version without segments."""
    names = meta.get("segments")
    if not isinstance(names, dict) or not names:
        return None
    raw = client.hget(layout.segment_of(version), user_id)
    if raw is None:
        return None
    segment = raw.decode()
    return str(names.get(segment, segment))


def recent_events(client: redis.Redis, layout: KeyLayout, user_id: str) -> list[dict[str, str]]:
    """The user's newest events among the last ``EVENTS_SCANNED`` of the stream (bounded cost)."""
    entries = client.xrevrange(layout.events, count=EVENTS_SCANNED)
    wanted = user_id.encode()
    out = []
    for _, fields in entries:
        if fields.get(b"user_id") == wanted:
            out.append({k.decode(): v.decode(errors="replace") for k, v in fields.items()})
            if len(out) >= EVENTS_SHOWN:
                break
    return out


def _entries(result: Any) -> list[dict[str, Any]]:
    return result.items if result is not None else []


# ------------------------------------------------------------------ pages
@bp.get("")
def overview() -> Response:
    client, layout = _client(), _layout()
    now = time.time()
    live, meta = _live(client, layout)
    versions = list_versions(client, layout, include_pending=False)
    published_at = next((v.published_at for v in versions if v.version == live), None)
    experiments = _experiments()
    names, rows = offline_metrics(meta)
    chart_metric = next((n for n in names if "ndcg" in n.lower()), names[0] if names else None)
    return _page(
        "console/overview.html",
        live=live,
        meta=meta,
        published_at=published_at,
        now=now,
        versions=versions,
        warnings=warnings_for(meta, published_at, experiments, now),
        metric_names=names,
        metric_rows=rows,
        chart=bar_chart(rows, chart_metric) if chart_metric else Markup(""),
        chart_metric=chart_metric,
        timings=sorted((summary(meta).get("timings") or {}).items(), key=lambda kv: -float(kv[1] or 0)),
        validation=summary(meta).get("validation") or {},
        run=summary(meta),
        segments=segment_rows(meta),
        audiences=list_audiences(client, layout),
        message=request.args.get("message", ""),
    )


@bp.post("/rollback")
def rollback_version() -> Response:
    target = request.form.get("version") or None
    if request.form.get("confirm") != "yes":
        return _page("console/confirm.html", version=target)
    try:
        previous, live = rollback(_client(), _layout(), target, lock_wait_seconds=5.0)
    except RecsysError as error:
        return secure(make_response(render_template("console/message.html", title="Rollback failed", message=str(error)), 409))
    response = redirect(f"/console?message=live+version+{live}+(was+{previous})", code=303)
    return secure(response)


@bp.get("/users")
def user() -> Response:
    user_id = request.args.get("user_id", "").strip()
    client, layout = _client(), _layout()
    live, meta = _live(client, layout)
    columns, events, routing, segment = [], [], None, None
    if user_id and live:
        segment = user_segment(client, layout, live, meta, user_id)
        reader = services().reader
        for model in meta.get("user_models") or []:
            try:
                result = reader.user(user_id, LIST_N, lambda _m, model=model: model)
            except RecsysError as error:
                columns.append({"model": model, "error": str(error), "entries": [], "fallback": None})
                continue
            columns.append({"model": model, "entries": _entries(result), "fallback": result.fallback,
                            "default": model == meta.get("default_model")})
        events = recent_events(client, layout, user_id)
        try:
            routing = services().router.route(user_id, None)
        except RecsysError:
            routing = None
    return _page("console/user.html", user_id=user_id, live=live, columns=columns, events=events, routing=routing,
                 has_segments=bool(meta.get("segments")), segment=segment)


@bp.get("/items")
def item() -> Response:
    item_id = request.args.get("item_id", "").strip()
    client, layout = _client(), _layout()
    live, meta = _live(client, layout)
    catalog, similar, together, appearances = None, [], [], {}
    if item_id and live:
        raw, counted = client.hget(layout.catalog(live), item_id), client.hget(layout.appearances(live), item_id)
        catalog = orjson.loads(raw) if raw is not None else None
        appearances = orjson.loads(counted) if counted is not None else {}
        reader = services().reader
        for model in meta.get("similar_models") or []:
            result = reader.similar(item_id, LIST_N, lambda _m, model=model: [model])
            similar.append({"model": model, "entries": _entries(result) if result.source == model else []})
        if meta.get("has_together"):
            together = _entries(reader.together(item_id, LIST_N))
    return _page(
        "console/item.html", item_id=item_id, live=live, catalog=catalog, similar=similar, together=together,
        appearances=appearances, user_models=meta.get("user_models") or [],
    )


@bp.get("/experiments")
def experiments() -> Response:
    from recsys.abtest.report import build_report

    client, layout = _client(), _layout()
    now = time.time()
    cards = [{"experiment": e, "report": build_report(client, layout, e, now=now)} for e in _experiments()[:10]]
    return _page("console/experiments.html", cards=cards)


# ------------------------------------------------------------------ formatting
def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0.0, float(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def fmt_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(timestamp)))


def fmt_score(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "–"


def fmt_price(value: Any) -> str:
    return f"{value:,.2f}" if isinstance(value, (int, float)) else "–"


# ------------------------------------------------------------------ OpenAPI
def _html(summary: str, operation: str, parameters: list[dict[str, Any]] | None = None, post: bool = False) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}},
        "401": {"description": "Login page (HTML): no admin token presented."},
        "404": {"description": "Admin disabled (HTML)."},
    }
    if post:
        responses["303"] = {"description": "Done: redirect."}
        responses["403"] = {"description": "The form's CSRF token is missing or wrong."}
    document: dict[str, Any] = {"summary": summary, "operationId": operation, "responses": responses}
    if parameters:
        document["parameters"] = parameters
    return document


def _query(name: str, text: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}


OPENAPI_PATHS: dict[str, Any] = {
    "/console": {"get": _html("Console overview: live version, versions, run metrics, warnings", "consoleOverview",
                              [_query("message", "Status line to show (after a rollback).")])},
    "/console/login": {
        "get": _html("Console login form", "consoleLoginForm"),
        "post": _html("Log in with the admin token (form field token); sets the console cookie", "consoleLogin", post=True),
    },
    "/console/logout": {"post": _html("Log out (drops the console cookie)", "consoleLogout", post=True)},
    "/console/rollback": {"post": _html("Make a version live (form fields version, confirm=yes, csrf)", "consoleRollback", post=True)},
    "/console/users": {"get": _html("A user's events, A/B routing and lists from every model", "consoleUser",
                                    [_query("user_id", "User to show.")])},
    "/console/items": {"get": _html("An item's catalogue entry, similar items and bought-together", "consoleItem",
                                    [_query("item_id", "Item to show.")])},
    "/console/experiments": {"get": _html("The experiments' reports", "consoleExperiments")},
}

"""``GET /dashboard``: a small HTML page of the experiments, their reports and charts.

It shows business numbers, so it is served only when the admin API is on
(``RECSYS_ADMIN_TOKEN`` set; otherwise the plain 404 of an unknown URL) and only to a
holder of the admin token: an ``Authorization: Bearer`` header, or the login form, which
POSTs the token to ``/dashboard/login`` and gets an HttpOnly, SameSite=Strict cookie (an
HMAC of the token, never the token itself). A token is never taken from the URL, so it
never reaches an access log, the browser history or a Referer. Charts are inline SVG made
on the server: the page loads nothing else (no script, no CDN; a strict CSP says so).
"""

from __future__ import annotations

import math
import time
from html import escape
from typing import Any
from flask import Blueprint, Response, make_response, redirect, render_template, request
from markupsafe import Markup

from recsys.abtest.experiments import ExperimentStore, live_published
from recsys.abtest.report import METRIC_LABELS, METRICS, build_report, iso
from serving.admin import admin_token, bearer_token, key_layout, redis_client, token_matches
from serving.errors import NOT_FOUND_MESSAGE, error_response
from serving.pages import MAX_LOGIN_BYTES, secure, set_login_cookie, signed

COOKIE = "recsys_dashboard"
MAX_EXPERIMENTS_SHOWN = 10

bp = Blueprint("dashboard", __name__, template_folder="templates")


def cookie_value(token: str) -> str:
    """What the cookie holds: an HMAC of the token (a stolen cookie is not the API token)."""
    return signed(token, b"recsys-dashboard-v1")




def _login_page(status: int, message: str) -> Response:
    response = make_response(render_template("abtest_login.html", message=message), status)
    return secure(response)




@bp.post("/dashboard/login")
def login() -> Response:
    """The login form's target: the token in the POST body -> the cookie, and back to /dashboard."""
    expected = admin_token()
    if expected is None:
        return error_response(404, NOT_FOUND_MESSAGE)
    if (request.content_length or 0) > MAX_LOGIN_BYTES:
        return _login_page(413, "That request is too large.")
    if not token_matches(request.form.get("token"), expected):
        return _login_page(401, "That token is not the admin token.")
    return set_login_cookie(redirect("/dashboard", code=303), COOKIE, cookie_value(expected), "/dashboard")


@bp.get("/dashboard")
def dashboard() -> Response:
    expected = admin_token()
    if expected is None:
        return error_response(404, NOT_FOUND_MESSAGE)
    if "token" in request.args:
        return _login_page(400, "A token in the address is not accepted (it would be logged); sign in below.")
    authorised = token_matches(bearer_token(), expected) or token_matches(request.cookies.get(COOKIE), cookie_value(expected))
    if not authorised:
        return _login_page(401, "The dashboard needs the admin token.")

    store = ExperimentStore(redis_client(), key_layout())
    store.mark_broken(live_published(store.client, store.layout))
    experiments = list(reversed(store.list()))
    selected = request.args.get("experiment")
    if selected:
        experiments = [e for e in experiments if e.name == selected]
    now = time.time()
    cards = []
    for experiment in experiments[:MAX_EXPERIMENTS_SHOWN]:
        report = build_report(store.client, store.layout, experiment, now=now)
        cards.append({"experiment": experiment, "report": report, "chart": chart_svg(report)})
    page = render_template(
        "abtest_dashboard.html",
        cards=cards,
        total=len(experiments),
        shown=min(len(experiments), MAX_EXPERIMENTS_SHOWN),
        selected=selected,
        generated=iso(now),
        fmt_rate=fmt_rate,
        fmt_money=fmt_money,
        fmt_diff=fmt_diff,
        fmt_p=fmt_p,
        fmt_p_phrase=fmt_p_phrase,
        iso=iso,
    )
    return secure(make_response(page, 200))


# ---------------------------------------------------------------- formatting
def fmt_rate(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def fmt_money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def fmt_p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def fmt_p_phrase(value: float | None) -> str:
    """"p = 0.0123" or "p < 0.0001", for sentences."""
    text = fmt_p(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def fmt_diff(result: dict[str, Any] | None, percent: bool) -> str:
    if not result or result["diff"] is None:
        return "–"
    scale, unit = (100.0, " pp") if percent else (1.0, "")
    low, high = result["ci"]
    text = f"{scale * result['diff']:+.2f}{unit}"
    if low is not None and high is not None:
        text += f" [{scale * low:+.2f}, {scale * high:+.2f}]"
    if result["relative"] is not None:
        text += f" ({100 * result['relative']:+.1f}%)"
    return text


# --------------------------------------------------------------------- chart
CONTROL_COLOR = "#8795a1"
NEUTRAL_COLOR = "#3b82c4"
BETTER_COLOR = "#2f9e44"
WORSE_COLOR = "#d6336c"


def _nice_max(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def chart_svg(report: dict[str, Any], panel_width: int = 300, height: int = 230) -> Markup:
    """Inline SVG: one panel per metric, a bar per variant with its 95% interval as a whisker.

    A non-control bar is green (significantly better than control), red (significantly
    worse) or blue (no significant difference); the control is grey.
    """
    variants = report["variants"]
    top, bottom, left, right = 34, 40, 52, 12
    plot_h = height - top - bottom
    plot_w = panel_width - left - right
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{panel_width * len(METRICS)}" height="{height}" '
        f'viewBox="0 0 {panel_width * len(METRICS)} {height}" role="img" aria-label="metrics per variant" '
        'font-family="system-ui, sans-serif" font-size="11">'
    ]
    for p, metric in enumerate(METRICS):
        x0 = p * panel_width
        scale = 100.0 if metric != "revenue_per_user" else 1.0
        highs = [v[metric]["ci"][1] if v[metric]["ci"][1] is not None else v[metric]["value"] for v in variants]
        ymax = _nice_max(max([scale * h for h in highs if h is not None] or [0.0]) * 1.1)
        parts.append(
            f'<text x="{x0 + panel_width / 2:.1f}" y="16" text-anchor="middle" font-size="13" font-weight="600">'
            f"{escape(METRIC_LABELS[metric])}{' (%)' if scale == 100 else ''}</text>"
        )
        for tick in range(5):
            value = ymax * tick / 4
            y = top + plot_h * (1 - tick / 4)
            parts.append(f'<line x1="{x0 + left}" y1="{y:.1f}" x2="{x0 + left + plot_w}" y2="{y:.1f}" stroke="#e3e7eb"/>')
            parts.append(f'<text x="{x0 + left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{value:g}</text>')
        slot = plot_w / max(1, len(variants))
        bar_w = min(56.0, slot * 0.6)
        for i, variant in enumerate(variants):
            result = variant[metric]
            cx = x0 + left + slot * (i + 0.5)
            label = escape(variant["name"])
            parts.append(f'<text x="{cx:.1f}" y="{height - bottom + 16}" text-anchor="middle">{label}</text>')
            if result["value"] is None:
                parts.append(f'<text x="{cx:.1f}" y="{top + plot_h - 6}" text-anchor="middle" fill="#999">no data</text>')
                continue
            color = CONTROL_COLOR
            comparison = (variant["vs_control"] or {}).get(metric)
            if comparison is not None:
                color = NEUTRAL_COLOR
                if comparison.get("significant") and comparison["diff"] is not None:
                    color = BETTER_COLOR if comparison["diff"] > 0 else WORSE_COLOR
            value = scale * result["value"]
            bar_h = plot_h * min(value / ymax, 1.0)
            parts.append(
                f'<rect x="{cx - bar_w / 2:.1f}" y="{top + plot_h - bar_h:.1f}" width="{bar_w:.1f}" height="{bar_h:.1f}" '
                f'fill="{color}" rx="2"><title>{label}: {value:.4g}</title></rect>'
            )
            low, high = result["ci"]
            if low is not None and high is not None:
                y_low = top + plot_h * (1 - min(max(scale * low / ymax, 0.0), 1.0))
                y_high = top + plot_h * (1 - min(max(scale * high / ymax, 0.0), 1.0))
                parts.append(
                    f'<path d="M{cx:.1f},{y_low:.1f}V{y_high:.1f}M{cx - 7:.1f},{y_low:.1f}h14M{cx - 7:.1f},{y_high:.1f}h14" '
                    'stroke="#222" stroke-width="1.4" fill="none"/>'
                )
                label_y = y_high - 5
            else:
                label_y = top + plot_h - bar_h - 5
            parts.append(f'<text x="{cx:.1f}" y="{max(label_y, top - 2):.1f}" text-anchor="middle" fill="#222">{value:.3g}</text>')
        parts.append(
            f'<line x1="{x0 + left}" y1="{top + plot_h}" x2="{x0 + left + plot_w}" y2="{top + plot_h}" stroke="#555"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))

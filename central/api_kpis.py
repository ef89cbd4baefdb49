"""GET /api/v1/kpis: the programme's KPIs for a period, in JSON or CSV (central.kpi_report).

Query: from, to (the store's calendar days, YYYY-MM-DD, both included), and optionally
store or region, tier or segment, active_days, format=csv.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

from aiohttp import web

from central import kpi_report
from central.roles import Role as R
from central.roles import admits
from central.web_common import DB, ApiError, query_int

routes = web.RouteTableDef()
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)


def _day(request: web.Request, name: str) -> date:
    value = request.query.get(name)
    if value is None:
        raise ApiError(400, f"query '{name}' is required (YYYY-MM-DD)")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"query '{name}' must be a day, YYYY-MM-DD") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        # The report reaches a period back (churn) and days past the end: near the
        # calendar's ends that arithmetic would overflow.
        raise ApiError(400, f"query '{name}' must be a day from {FIRST_DAY} to {LAST_DAY}")
    return day


def _text(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    if value is not None and not 0 < len(value) <= 64:
        raise ApiError(400, f"query '{name}' must be 1 to 64 characters")
    return value


@routes.get("/api/v1/kpis")
@admits(R.ADMIN, R.MARKETING, R.ANALYST, R.SECURITY, R.AUDITOR)  # figures, no person's data
async def get_kpis(request: web.Request) -> web.Response:
    if request.query.get("store") is not None and request.query.get("region") is not None:
        raise ApiError(400, "give 'store' or 'region', not both")
    try:
        period = kpi_report.Period(
            _day(request, "from"), _day(request, "to"), store=_text(request, "store"),
            region=_text(request, "region"), tier=_text(request, "tier"),
            segment=_text(request, "segment"),
            active_days=query_int(request, "active_days", 90))
        report = kpi_report.report(request.app[DB], period)
    except kpi_report.KpiError as e:
        raise ApiError(400, str(e)) from None
    fmt = request.query.get("format", "json")
    if fmt == "json":
        return web.json_response(report)
    if fmt == "csv":
        return web.Response(text=as_csv(report), content_type="text/csv", charset="utf-8")
    raise ApiError(400, "query 'format' must be json or csv")


def as_csv(report: dict[str, Any]) -> str:
    """One row per figure: its dotted name, its value, and its group's definition."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["figure", "value", "definition"])

    def walk(prefix: str, node: Any, definition: str) -> None:
        if isinstance(node, dict):
            definition = node.get("definition", definition)
            for key, value in node.items():
                if key != "definition":
                    walk(f"{prefix}.{key}" if prefix else key, value, definition)
        elif isinstance(node, list):
            writer.writerow([prefix, ";".join(map(str, node)), definition])
        else:
            writer.writerow([prefix, "" if node is None else node, definition])

    walk("", report, "")
    return out.getvalue()

"""The dashboards' one chart component: a chart and the table behind it, as one typed value.

Every chart on a dashboard page is a `ChartTable`. The page template includes
`labelling/dashboards/_chart.html` with `table=<the ChartTable>`, which draws

- the chart, with the vendored Chart.js, from a `<script type="application/json">` data island
  (`json_script`, so no inline JavaScript and nothing the CSP forbids); `static/js/dashboards.js`
  finds every `[data-chart]` figure and draws it, again after each htmx swap;
- the table of the same numbers under it (the chart is a picture of the table, never more);
- a "Download CSV" link.

CSV downloads use the page's own URL with `?format=csv&chart=<name>` added to whatever filters
the page has (date range, kind, trainer), so the CSV always holds the table the lead is looking
at. A view builds its tables as usual and, before rendering, returns
`csv_response_for(request, tables)` when that is not None (an unknown chart name is a 400).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.text import slugify

ChartKind = str  # "line" or "bar"
KINDS = ("line", "bar")

# Colour-blind-safe (Okabe-Ito) with enough contrast on white, one per series in order.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#3c4654", "#b4443a")


@dataclass(frozen=True)
class ChartTable:
    """A chart and its table.

    `columns` name the table's columns; `rows` hold one tuple per row, the first value being
    the x value (a day, a bucket, a trainer). `series` lists the columns drawn as the chart's
    lines or bars (by name, from `columns[1:]`); the other columns are shown in the table only
    (counts behind a share, for instance). Values may be None (no data: a gap in the chart, a
    dash in the table).
    """

    name: str
    title: str
    x_label: str
    y_label: str
    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    series: Sequence[str] = ()
    kind: ChartKind = "line"
    y_min: float | None = None
    y_max: float | None = None
    description: str = ""
    percent: bool = False
    # Columns shown as percentages when `percent` (default: the series).
    percent_columns: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Chart kind must be one of {KINDS}, not {self.kind!r}.")
        if slugify(self.name) != self.name:
            raise ValueError(f"Chart name {self.name!r} must be a slug.")
        unknown = [name for name in self.series if name not in self.columns[1:]]
        if unknown:
            raise ValueError(f"Series {unknown} are not columns of chart {self.name!r}.")
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"A row of chart {self.name!r} does not match its columns.")

    @property
    def element_id(self) -> str:
        return f"chart-{self.name}"

    @property
    def data_id(self) -> str:
        return f"chart-{self.name}-data"

    @property
    def long(self) -> bool:
        """More rows than fit beside the chart: the table starts folded."""
        return len(self.rows) > 12

    @property
    def empty(self) -> bool:
        return not self.rows

    def chart_data(self) -> dict:
        """What dashboards.js hands to Chart.js (through the template's json_script)."""
        indexes = [list(self.columns).index(name) for name in self.series]
        return {
            "kind": self.kind,
            "labels": [_plain(row[0]) for row in self.rows],
            "xLabel": self.x_label,
            "yLabel": self.y_label,
            "yMin": self.y_min,
            "yMax": self.y_max,
            "percent": self.percent,
            "datasets": [
                {
                    "label": name,
                    "colour": PALETTE[number % len(PALETTE)],
                    "data": [_number(row[index]) for row in self.rows],
                }
                for number, (name, index) in enumerate(zip(self.series, indexes, strict=True))
            ],
        }

    def display_rows(self) -> list[list[str]]:
        """The table's cells as text: shares as percentages when `percent`, floats rounded."""
        shown = self.percent_columns or self.series
        series_indexes = {list(self.columns).index(name) for name in shown}
        return [
            [
                _display(value, percent=self.percent and index in series_indexes)
                for index, value in enumerate(row)
            ]
            for row in self.rows
        ]

    def csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([_csv_cell(name) for name in self.columns])
        for row in self.rows:
            writer.writerow([_csv_cell(value) for value in row])
        return out.getvalue()


def _plain(value: object) -> object:
    if isinstance(value, (int, float, str)) or value is None:
        return value
    return str(value)


def _number(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _display(value: object, *, percent: bool) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if percent:
            return f"{value * 100:.1f}%"
        size = abs(value)
        return f"{value:.0f}" if size >= 100 else f"{value:.1f}" if size >= 10 else f"{value:.3f}"
    return str(value)


def _csv_cell(value: object) -> object:
    """A cell a spreadsheet will not run: text starting with =, +, -, @ gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else round(value, 6)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value if isinstance(value, int) else str(value)


def chart_csv_response(table: ChartTable, *, prefix: str = "") -> HttpResponse:
    """The table as a CSV attachment named after the chart."""
    response = HttpResponse(table.csv_text(), content_type="text/csv; charset=utf-8")
    filename = f"{prefix}-{table.name}.csv" if prefix else f"{table.name}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def csv_requested(request: HttpRequest) -> bool:
    return request.GET.get("format") == "csv"


def csv_response_for(
    request: HttpRequest, tables: Sequence[ChartTable], *, prefix: str = ""
) -> HttpResponse | None:
    """The CSV of the chart `?chart=` names when `?format=csv`; None when no CSV was asked for.

    An unknown or missing chart name is a 400 that lists the page's charts.
    """
    if not csv_requested(request):
        return None
    name = request.GET.get("chart", "")
    for table in tables:
        if table.name == name:
            return chart_csv_response(table, prefix=prefix)
    names = ", ".join(table.name for table in tables)
    return HttpResponseBadRequest(
        f"chart: no chart {name!r} on this page; it has {names}.", content_type="text/plain"
    )

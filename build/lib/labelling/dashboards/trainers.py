"""The trainers page (one row per trainer, sortable, those far below the rest highlighted with
the reason) and a trainer's own page (their weekly trend beside the project's)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

from annotations.models import Project
from labelling.dashboards.charts import ChartTable
from labelling.dashboards.outliers import Rule, outliers
from labelling.dashboards.selectors import DateSpan, daily_rows, trainer_daily, trainer_totals
from labelling.dashboards.totals import TrainerTotals

# Figures judged only for trainers with enough of them to mean something.
MIN_RANKINGS = 20
MIN_LENGTH_PAIRS = 50
MIN_TASKS = 20

RULES = {
    "agreement": Rule(
        "agreement",
        low=True,
        floor=0.03,
        reason="agreement with the others' consensus {value:.0%} (median {median:.0%})",
    ),
    "all_bad_share": Rule(
        "all_bad_share",
        low=False,
        floor=0.03,
        reason='marks "all bad" on {value:.0%} of sets (median {median:.0%})',
    ),
    "longer_share": Rule(
        "longer_share",
        low=False,
        floor=0.03,
        reason="prefers the longer reply in {value:.0%} of pairs (median {median:.0%})",
    ),
    "median_seconds": Rule(
        "median_seconds",
        low=True,
        floor=3.0,
        reason="median {value:.0f} s per task (median {median:.0f} s): possibly rushing",
    ),
}
ENOUGH = {
    "agreement": lambda t: t.agreement_count >= MIN_RANKINGS,
    "all_bad_share": lambda t: t.rankings >= MIN_RANKINGS,
    "longer_share": lambda t: t.length_pairs >= MIN_LENGTH_PAIRS,
    "median_seconds": lambda t: t.volume >= MIN_TASKS,
}

# Sortable columns: query value -> (heading, key).
COLUMNS = {
    "username": ("Trainer", lambda t: t.username.lower()),
    "volume": ("Tasks", lambda t: t.volume),
    "rankings": ("Rankings", lambda t: t.rankings),
    "median_seconds": ("Median time", lambda t: t.median_seconds),
    "agreement": ("Agreement", lambda t: t.agreement),
    "all_bad_share": ('"All bad"', lambda t: t.all_bad_share),
    "flags_raised": ("Flags", lambda t: t.flags_raised),
    "unedited_share": ("Unedited drafts", lambda t: t.unedited_share),
    "longer_share": ("Longer preferred", lambda t: t.longer_share),
}
DEFAULT_SORT = "agreement"


@dataclass
class TrainerRow:
    totals: TrainerTotals
    reasons: list[str] = field(default_factory=list)

    @property
    def highlighted(self) -> bool:
        return bool(self.reasons)


def trainer_rows(
    project: Project, span: DateSpan, *, sort: str = DEFAULT_SORT, descending: bool = False
) -> list[TrainerRow]:
    """Every trainer with activity in the span, sorted by `sort` (empty values last)."""
    if sort not in COLUMNS:
        raise ValueError(f"sort: one of {', '.join(COLUMNS)}.")
    rows = [TrainerRow(totals=t) for t in trainer_totals(project, span)]
    for name, rule in RULES.items():
        values = {
            row.totals.user_id: getattr(row.totals, name)
            for row in rows
            if ENOUGH[name](row.totals) and getattr(row.totals, name) is not None
        }
        for row in rows:
            reason = outliers(values, rule).get(row.totals.user_id)
            if reason:
                row.reasons.append(reason)
    key = COLUMNS[sort][1]
    present = [row for row in rows if key(row.totals) is not None]
    missing = [row for row in rows if key(row.totals) is None]
    present.sort(key=lambda row: key(row.totals), reverse=descending)
    return present + missing


def trainers_chart(rows: list[TrainerRow]) -> ChartTable:
    return ChartTable(
        name="trainer-agreement",
        title="Agreement with the others' consensus, per trainer",
        x_label="Trainer",
        y_label="Pairwise agreement",
        columns=["Trainer", "Rankings", "Agreement with others", "Highlighted because"],
        rows=[
            (
                row.totals.username,
                row.totals.rankings,
                row.totals.agreement,
                "; ".join(row.reasons),
            )
            for row in rows
        ],
        series=["Agreement with others"],
        kind="bar",
        y_min=0,
        y_max=1,
        percent=True,
        description="Each ranking is compared with the consensus of the set's other rankings "
        "(never one it helped make).",
    )


def _week(day: date) -> date:
    return day - timedelta(days=day.weekday())


def trainer_trend(project: Project, span: DateSpan, user_id: int) -> list[ChartTable]:
    """A trainer's weekly agreement (beside the project's), volume and time per task."""
    theirs: dict[date, TrainerTotals] = defaultdict(lambda: TrainerTotals(user_id=user_id))
    for day, figures in trainer_daily(project, span, user_id):
        theirs[_week(day)].add(figures.fields())
    project_weeks: dict[date, list[float]] = defaultdict(lambda: [0.0, 0])
    for row in daily_rows(project, span, "ranking_agreement_sum", "ranking_agreement_count"):
        week = project_weeks[_week(row["day"])]
        week[0] += row["ranking_agreement_sum"]
        week[1] += row["ranking_agreement_count"]
    weeks = sorted({_week(day) for day in span.days()})
    agreement = ChartTable(
        name="trainer-trend",
        title="Weekly agreement",
        x_label="Week starting (UTC)",
        y_label="Pairwise agreement",
        columns=[
            "Week",
            "Rankings",
            "Agreement with others",
            "All trainers' agreement with others",
        ],
        rows=[
            (
                week.isoformat(),
                theirs[week].rankings if week in theirs else 0,
                theirs[week].agreement if week in theirs else None,
                (project_weeks[week][0] / project_weeks[week][1])
                if project_weeks.get(week, [0, 0])[1]
                else None,
            )
            for week in weeks
        ],
        series=["Agreement with others", "All trainers' agreement with others"],
        y_min=0,
        y_max=1,
        percent=True,
    )
    volume = ChartTable(
        name="trainer-volume",
        title="Tasks done and time per task, per week",
        x_label="Week starting (UTC)",
        y_label="Tasks done",
        columns=["Week", "Tasks done", "Median seconds per task"],
        rows=[
            (
                week.isoformat(),
                theirs[week].volume if week in theirs else 0,
                _round(theirs[week].median_seconds) if week in theirs else None,
            )
            for week in weeks
        ],
        series=["Tasks done"],
        kind="bar",
        y_min=0,
    )
    return [agreement, volume]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

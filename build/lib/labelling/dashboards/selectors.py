"""Reads of the dashboards' rollups (see `rollups`): typed values for the pages, each from a few
hundred small rows whatever the project's size. `span` is a `DateSpan` (UTC days, both ends
included) or None for all time."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet, Sum

from annotations.models import Membership, Project, PromptReport
from annotations.reliability import FleissTally
from labelling.dashboards.gathering import COINCIDENCE_SIZE
from labelling.dashboards.rollups import trainer_totals_on
from labelling.dashboards.totals import FIELDS, TrainerTotals, empty_length_buckets
from labelling.models import DailyRollup, DashboardState, GroupDay, Task, TrainerDay


@dataclass(frozen=True)
class DateSpan:
    start: date
    end: date

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]


def _in_span(rows: QuerySet, span: DateSpan | None) -> QuerySet:
    if span is None:
        return rows
    return rows.filter(day__gte=span.start, day__lte=span.end)


def daily_rows(project: Project, span: DateSpan | None, *fields: str) -> QuerySet:
    """The project's `DailyRollup` rows in the span, oldest first, as dicts of `fields`."""
    return (
        _in_span(DailyRollup.objects.filter(project=project), span)
        .order_by("day")
        .values("day", *fields)
    )


def refreshed_through(project: Project) -> datetime | None:
    """Until when the rollups hold the project's data (None: never refreshed)."""
    return (
        DashboardState.objects.filter(project=project)
        .values_list("refreshed_through", flat=True)
        .first()
    )


# --- agreement (for the agreement and models pages) ---------------------------------------------


@dataclass(frozen=True)
class PeriodAgreement:
    start: date
    sets: int
    mean: float | None


def agreement_weekly(project: Project, span: DateSpan | None) -> list[PeriodAgreement]:
    """Mean set agreement per ISO week (weeks start on Monday), oldest first."""
    sums: dict[date, list[float]] = defaultdict(lambda: [0.0, 0])
    for row in daily_rows(project, span, "agreement_sum", "agreement_count"):
        week = row["day"] - timedelta(days=row["day"].weekday())
        sums[week][0] += row["agreement_sum"]
        sums[week][1] += row["agreement_count"]
    return [
        PeriodAgreement(start=week, sets=int(count), mean=total / count if count else None)
        for week, (total, count) in sorted(sums.items())
    ]


def agreement_value_counts(
    project: Project, span: DateSpan | None
) -> tuple[list[float], list[int]]:
    """Distinct set agreements (4 places) and how many sets had each, ascending: the input of
    `bootstrap_mean_interval(values, counts)` and of the distribution chart."""
    counts: dict[str, int] = defaultdict(int)
    for row in daily_rows(project, span, "agreement_values"):
        for key, count in row["agreement_values"].items():
            counts[key] += count
    ordered = sorted(counts.items(), key=lambda item: float(item[0]))
    return [float(key) for key, _ in ordered], [count for _, count in ordered]


@dataclass(frozen=True)
class AgreementTotal:
    sets: int
    agreed_sets: int
    mean: float | None


def agreement_total(project: Project, span: DateSpan | None) -> AgreementTotal:
    sums = _in_span(DailyRollup.objects.filter(project=project), span).aggregate(
        sets=Sum("sets_completed"), total=Sum("agreement_sum"), count=Sum("agreement_count")
    )
    count = sums["count"] or 0
    return AgreementTotal(
        sets=sums["sets"] or 0,
        agreed_sets=count,
        mean=(sums["total"] / count) if count else None,
    )


def coincidences_total(project: Project, span: DateSpan | None) -> list[list[float]]:
    """The summed Krippendorff coincidence matrix (for `krippendorff_alpha_ordinal`)."""
    total = [[0.0] * COINCIDENCE_SIZE for _ in range(COINCIDENCE_SIZE)]
    for row in daily_rows(project, span, "coincidences"):
        for i, values in enumerate(row["coincidences"] or []):
            for j, value in enumerate(values):
                total[i][j] += value
    return total


def flag_tallies(project: Project, span: DateSpan | None) -> dict[str, FleissTally]:
    """A merged `FleissTally` per flag name (call `.kappa()`)."""
    tallies: dict[str, FleissTally] = {}
    for row in daily_rows(project, span, "flag_tallies"):
        for name, data in row["flag_tallies"].items():
            tally = FleissTally.from_json(data)
            tallies[name] = tallies[name].merge(tally) if name in tallies else tally
    return dict(sorted(tallies.items()))


@dataclass(frozen=True)
class ModelWins:
    """wins[i][j]: how many sets' consensus put a reply of names[i] above one of names[j]."""

    names: list[str]
    wins: list[list[int]]


def model_wins(project: Project, span: DateSpan | None) -> ModelWins:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for row in daily_rows(project, span, "model_wins"):
        for winner, losers in row["model_wins"].items():
            for loser, count in losers.items():
                counts[(winner, loser)] += count
    names = sorted({name for pair in counts for name in pair})
    index = {name: i for i, name in enumerate(names)}
    wins = [[0] * len(names) for _ in names]
    for (winner, loser), count in counts.items():
        wins[index[winner]][index[loser]] = count
    return ModelWins(names=names, wins=wins)


@dataclass(frozen=True)
class GroupAgreement:
    value: str
    sets: int
    mean: float | None


def agreement_by(project: Project, dimension: str, span: DateSpan | None) -> list[GroupAgreement]:
    """Set agreement per candidate model, prompt language or tag (`GroupDay.Dimension`), the
    largest groups first."""
    if dimension not in GroupDay.Dimension.values:
        raise ValueError(f"Unknown dimension {dimension!r}.")
    rows = (
        _in_span(GroupDay.objects.filter(project=project, dimension=dimension), span)
        .values("value")
        .annotate(sets=Sum("sets"), total=Sum("agreement_sum"), count=Sum("agreement_count"))
        .order_by("-sets", "value")
    )
    return [
        GroupAgreement(
            value=row["value"],
            sets=row["sets"],
            mean=row["total"] / row["count"] if row["count"] else None,
        )
        for row in rows
    ]


# --- trainers and length (the trainers and length-bias pages) ------------------------------------


def trainer_totals(
    project: Project, span: DateSpan | None, user_id: int | None = None
) -> list[TrainerTotals]:
    """Per trainer sums over the span (one trainer with `user_id`), by username: the running
    totals at the span's end less those before its start (`TrainerDay` keeps running totals)."""
    end = span.end if span is not None else date.max
    at_end = {t.user_id: t for t in trainer_totals_on(project, end, user_id)}
    if span is not None:
        for before in trainer_totals_on(project, span.start - timedelta(days=1), user_id):
            if before.user_id in at_end:
                at_end[before.user_id].add(before.fields(), sign=-1)
    totals = [t for t in at_end.values() if t.volume or t.rankings or t.drafts_used]
    names = dict(
        get_user_model()
        .objects.filter(pk__in=[t.user_id for t in totals])
        .values_list("pk", "username")
    )
    for total in totals:
        total.username = names.get(total.user_id, f"user {total.user_id}")
    return sorted(totals, key=lambda total: total.username)


def trainer_daily(
    project: Project, span: DateSpan, user_id: int
) -> list[tuple[date, TrainerTotals]]:
    """One trainer's figures of each day they did something in the span, oldest first (the
    differences of consecutive running totals)."""
    found = trainer_totals_on(project, span.start - timedelta(days=1), user_id)
    previous = found[0] if found else TrainerTotals(user_id=user_id)
    days = []
    rows = TrainerDay.objects.filter(
        project=project, user_id=user_id, day__gte=span.start, day__lte=span.end
    ).order_by("day")
    for row in rows.values("day", *FIELDS):
        current = TrainerTotals(user_id=user_id).add(row)
        days.append((row["day"], current.copy().add(previous.fields(), sign=-1)))
        previous = current
    return days


def project_length_buckets(project: Project, span: DateSpan | None) -> list[list[int]]:
    """[[pairs, longer won], ...] per length-difference bucket, over every trainer."""
    buckets = empty_length_buckets()
    for total in trainer_totals(project, span):
        for bucket, (pairs, won) in zip(buckets, total.length_buckets, strict=True):
            bucket[0] += pairs
            bucket[1] += won
    return buckets


# --- live counts (small indexed queries, not rollups) -------------------------------------------


def queue_depths(project: Project) -> dict[str, int]:
    """Open (waiting) and assigned tasks per kind, now."""
    rows = (
        Task.objects.filter(project=project, state__in=[Task.State.OPEN, Task.State.ASSIGNED])
        .values("kind", "state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    depths: dict[str, int] = defaultdict(int)
    for row in rows:
        depths[f"{row['kind']}:{row['state']}"] = row["n"]
    return dict(depths)


def open_reports(project: Project) -> int:
    return PromptReport.objects.filter(project=project, state=PromptReport.State.OPEN).count()


def member_user_id(project: Project, username: str) -> int | None:
    """The user id of the project's member called `username`, None when nobody is."""
    return (
        Membership.objects.filter(project=project, user__username=username)
        .values_list("user_id", flat=True)
        .first()
    )

"""The agreement dashboard's figures, read from the daily rollups: the project's agreement with
its bootstrap interval, Krippendorff's alpha over ranks, Fleiss' kappa per flag, the weekly
trend, the distribution over sets, agreement by candidate model, language and tag, and the sets
with the lowest agreement (read from the sets themselves, newest figures)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from annotations.models import Project, RankingSet
from annotations.reliability import bootstrap_mean_interval, krippendorff_alpha_ordinal
from labelling.dashboards.charts import ChartTable
from labelling.dashboards.gathering import day_start
from labelling.dashboards.selectors import (
    DateSpan,
    agreement_by,
    agreement_total,
    agreement_value_counts,
    agreement_weekly,
    coincidences_total,
    flag_tallies,
)
from labelling.models import GroupDay

LOWEST_SHOWN = 50
DISTRIBUTION_BINS = 10  # agreement 0-0.1, ..., 0.9-1.0 (1.0 falls in the last bin)
DIMENSIONS = (
    (GroupDay.Dimension.MODEL, "by-model", "Agreement by candidate model", "Candidate model"),
    (GroupDay.Dimension.LANGUAGE, "by-language", "Agreement by prompt language", "Language"),
    (GroupDay.Dimension.TAG, "by-tag", "Agreement by conversation tag", "Tag"),
)


@dataclass(frozen=True)
class FlagKappa:
    name: str
    kappa: float | None
    items: int


@dataclass(frozen=True)
class AgreementSummary:
    sets: int
    mean: float | None
    interval: tuple[float, float] | None
    alpha: float | None
    kappas: list[FlagKappa]


@dataclass(frozen=True)
class AgreementDashboard:
    summary: AgreementSummary
    charts: list[ChartTable]
    lowest: list[RankingSet]


def _summary(project: Project, span: DateSpan, values: list[float], counts: list[int]):
    total = agreement_total(project, span)
    coincidences = coincidences_total(project, span)
    return AgreementSummary(
        sets=total.agreed_sets,
        mean=total.mean,
        interval=bootstrap_mean_interval(values, counts) if values else None,
        alpha=krippendorff_alpha_ordinal(coincidences),
        kappas=[
            FlagKappa(name=name, kappa=tally.kappa(), items=tally.items)
            for name, tally in flag_tallies(project, span).items()
        ],
    )


def _weekly(project: Project, span: DateSpan) -> ChartTable:
    return ChartTable(
        name="weekly",
        title="Agreement by week",
        x_label="Week starting",
        y_label="Mean pairwise agreement",
        columns=["Week starting", "Agreement", "Sets completed"],
        rows=[
            (week.start.isoformat(), week.mean, week.sets)
            for week in agreement_weekly(project, span)
            if week.sets
        ],
        series=["Agreement"],
        y_min=0,
        y_max=1,
        description="Mean pairwise agreement of the sets completed each week.",
    )


def _distribution(values: list[float], counts: list[int]) -> ChartTable:
    bins = [0] * DISTRIBUTION_BINS
    for value, n in zip(values, counts, strict=True):
        bins[min(int(value * DISTRIBUTION_BINS), DISTRIBUTION_BINS - 1)] += n
    total = sum(bins)
    width = 1 / DISTRIBUTION_BINS
    # An empty range has no rows (and no shares to divide out).
    rows = [
        (f"{i * width:.1f}–{(i + 1) * width:.1f}", n, n / total)
        for i, n in enumerate(bins)
        if total
    ]
    return ChartTable(
        name="distribution",
        title="Agreement over sets",
        x_label="Set agreement",
        y_label="Sets",
        columns=["Set agreement", "Sets", "Share"],
        rows=rows,
        series=["Sets"],
        kind="bar",
        description="How many completed sets have each level of agreement.",
    )


def _by_dimension(project: Project, span: DateSpan) -> list[ChartTable]:
    return [
        ChartTable(
            name=name,
            title=title,
            x_label=x_label,
            y_label="Mean pairwise agreement",
            columns=[x_label, "Agreement", "Sets"],
            rows=[(g.value, g.mean, g.sets) for g in agreement_by(project, dimension, span)],
            series=["Agreement"],
            kind="bar",
            y_min=0,
            y_max=1,
            description="A set counts under each of its candidates' models and tags.",
        )
        for dimension, name, title, x_label in DIMENSIONS
    ]


def lowest_agreement_sets(
    project: Project, span: DateSpan, limit: int = LOWEST_SHOWN
) -> list[RankingSet]:
    """The sets completed in the span with the lowest agreement, lowest first, with their
    context."""
    sets = RankingSet.objects.filter(
        project=project,
        state=RankingSet.State.COMPLETE,
        agreement__isnull=False,
        # UTC days, as the rollups count them.
        completed_at__gte=day_start(span.start),
        completed_at__lt=day_start(span.end + timedelta(days=1)),
    )
    return list(
        sets.select_related("context")
        .only("pk", "agreement", "kendall_tau", "rankings_count", "completed_at", "context__text")
        .order_by("agreement", "pk")[:limit]
    )


def agreement_dashboard(*, project: Project, span: DateSpan) -> AgreementDashboard:
    values, counts = agreement_value_counts(project, span)
    charts = [_weekly(project, span), _distribution(values, counts), *_by_dimension(project, span)]
    return AgreementDashboard(
        summary=_summary(project, span, values, counts),
        charts=charts,
        lowest=lowest_agreement_sets(project, span),
    )

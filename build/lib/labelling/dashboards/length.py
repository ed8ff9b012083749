"""The length-bias page: how often the longer of two ranked replies won, by how much longer it
was, for the project and per trainer (labellers are known to favour longer answers)."""

from __future__ import annotations

from annotations.models import Project
from labelling.dashboards import histograms as h
from labelling.dashboards.charts import ChartTable
from labelling.dashboards.selectors import DateSpan, project_length_buckets, trainer_totals

BUCKET_LABELS = h.bucket_labels(h.LENGTH_EDGES, " chars")


def length_chart(buckets: list[list[int]], *, name: str, who: str) -> ChartTable:
    rows = [
        (label, pairs, won, won / pairs if pairs else None, 0.5)
        for label, (pairs, won) in zip(BUCKET_LABELS, buckets, strict=True)
    ]
    return ChartTable(
        name=name,
        title=f"Share of pairs won by the longer reply ({who})",
        x_label="Length difference between the two replies (characters)",
        y_label="Share won by the longer reply",
        columns=["Length difference", "Pairs", "Longer won", "Longer won (share)", "No preference"],
        rows=rows,
        series=["Longer won (share)", "No preference"],
        kind="line",
        y_min=0,
        y_max=1,
        percent=True,
        description="Every strict pair of every ranking of the completed sets; pairs of equal "
        "length and tied replies are left out. 50% means length made no difference.",
    )


def per_trainer_table(project: Project, span: DateSpan) -> ChartTable:
    totals = [t for t in trainer_totals(project, span) if t.length_pairs]
    return ChartTable(
        name="length-by-trainer",
        title="Longer reply preferred, per trainer",
        x_label="Trainer",
        y_label="Share of pairs won by the longer reply",
        columns=["Trainer", "Pairs", "Longer won (share)", *BUCKET_LABELS],
        rows=[
            (
                t.username,
                t.length_pairs,
                t.longer_share,
                *(won / pairs if pairs else None for pairs, won in t.length_buckets),
            )
            for t in totals
        ],
        series=["Longer won (share)"],
        percent_columns=["Longer won (share)", *BUCKET_LABELS],
        kind="bar",
        y_min=0,
        y_max=1,
        percent=True,
    )


def length_charts(project: Project, span: DateSpan, trainer: TrainerFilter) -> list[ChartTable]:
    charts = [length_chart(project_length_buckets(project, span), name="length", who="project")]
    if trainer is not None:
        user_id, username = trainer
        found = trainer_totals(project, span, user_id)
        buckets = found[0].length_buckets if found else [[0, 0] for _ in h.LENGTH_EDGES]
        charts.append(length_chart(buckets, name="length-trainer", who=username))
    charts.append(per_trainer_table(project, span))
    return charts


TrainerFilter = tuple[int, str] | None

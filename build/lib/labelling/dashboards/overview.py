"""The overview page's figures: throughput, queues, time per task, generation latency, drafts,
reports and active trainers, as headline numbers and `ChartTable`s (from the rollups)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from annotations.models import Project
from labelling.dashboards import histograms as h
from labelling.dashboards.charts import ChartTable
from labelling.dashboards.filters import DashboardFilters
from labelling.dashboards.selectors import (
    daily_rows,
    open_reports,
    queue_depths,
    trainer_daily,
)
from labelling.models import Task

KIND_LABELS = dict(Task.Kind.choices)


@dataclass(frozen=True)
class Headline:
    label: str
    value: str


@dataclass(frozen=True)
class Overview:
    headlines: list[Headline]
    charts: list[ChartTable]


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.1f} s"


def _kinds(filters: DashboardFilters) -> list[str]:
    return [filters.kind] if filters.kind else list(Task.Kind.values)


def build_overview(project: Project, filters: DashboardFilters, trainer_id: int | None) -> Overview:
    span, kinds = filters.span, _kinds(filters)
    rows = {
        row["day"]: row
        for row in daily_rows(
            project,
            span,
            "tasks_done",
            "task_seconds",
            "generation_seconds",
            "generations_failed",
            "assistant_turns",
            "from_draft",
            "edit_distances",
            "active_trainers",
        )
    }
    days = span.days()

    # Tasks done per day (of one trainer when filtered) and the seconds they took.
    done: dict[date, dict[str, int]] = defaultdict(dict)
    seconds_by_kind: dict[str, list[int]] = defaultdict(lambda: h.empty(h.TASK_SECONDS_EDGES))
    if trainer_id is not None:
        for day, figures in trainer_daily(project, span, trainer_id):
            done[day] = figures.tasks_done
            h.add_counts(seconds_by_kind["all"], figures.task_seconds)
    else:
        for day, row in rows.items():
            done[day] = row["tasks_done"]
            for kind, counts in row["task_seconds"].items():
                if kind in kinds:
                    h.add_counts(seconds_by_kind[kind], counts)

    throughput = ChartTable(
        name="tasks-done",
        title="Tasks done per day" + (f" by {filters.trainer}" if trainer_id else ""),
        x_label="Day (UTC)",
        y_label="Tasks done",
        columns=["Day", *(KIND_LABELS[k] for k in kinds), "Total"],
        rows=[
            (
                day.isoformat(),
                *(done[day].get(k, 0) for k in kinds),
                sum(done[day].get(k, 0) for k in kinds),
            )
            for day in days
        ],
        series=[KIND_LABELS[k] for k in kinds],
        y_min=0,
    )

    depths = queue_depths(project)
    queues = ChartTable(
        name="queue-depth",
        title="Queue depth now",
        x_label="Kind",
        y_label="Tasks",
        columns=["Kind", "Waiting", "Assigned"],
        rows=[
            (KIND_LABELS[k], depths.get(f"{k}:open", 0), depths.get(f"{k}:assigned", 0))
            for k in kinds
        ],
        series=["Waiting", "Assigned"],
        kind="bar",
        y_min=0,
    )

    timing_rows = []
    for kind, counts in sorted(seconds_by_kind.items()):
        timing_rows.append(
            (
                KIND_LABELS.get(kind, "All kinds"),
                sum(counts),
                _round(h.quantile(counts, h.TASK_SECONDS_EDGES, 0.5)),
                _round(h.quantile(counts, h.TASK_SECONDS_EDGES, 0.9)),
            )
        )
    timing = ChartTable(
        name="time-per-task",
        title="Time per task (assigned to done)",
        x_label="Kind",
        y_label="Seconds",
        columns=["Kind", "Tasks", "Median seconds", "90th percentile seconds"],
        rows=timing_rows,
        series=["Median seconds", "90th percentile seconds"],
        kind="bar",
        y_min=0,
        description="From histograms with fixed bins: medians are interpolated within a bin.",
    )

    generation_total = h.empty(h.GENERATION_SECONDS_EDGES)
    latency_rows, draft_rows, active_rows = [], [], []
    turns_total = drafted_total = 0
    edits_total = h.empty(h.EDIT_DISTANCE_EDGES)
    for day in days:
        row = rows.get(day)
        latency = row["generation_seconds"] if row else []
        h.add_counts(generation_total, latency)
        latency_rows.append(
            (
                day.isoformat(),
                sum(latency),
                row["generations_failed"] if row else 0,
                _round(h.quantile(latency, h.GENERATION_SECONDS_EDGES, 0.5)) if latency else None,
                _round(h.quantile(latency, h.GENERATION_SECONDS_EDGES, 0.95)) if latency else None,
            )
        )
        turns = row["assistant_turns"] if row else 0
        drafted = row["from_draft"] if row else 0
        edits = row["edit_distances"] if row else []
        turns_total += turns
        drafted_total += drafted
        h.add_counts(edits_total, edits)
        draft_rows.append(
            (
                day.isoformat(),
                turns,
                drafted,
                drafted / turns if turns else None,
                _round(h.quantile(edits, h.EDIT_DISTANCE_EDGES, 0.5)) if sum(edits) else None,
            )
        )
        active_rows.append((day.isoformat(), row["active_trainers"] if row else 0))

    latency_chart = ChartTable(
        name="generation-latency",
        title="Generation latency (queued to finished)",
        x_label="Day (UTC)",
        y_label="Seconds",
        columns=["Day", "Finished", "Failed", "p50 seconds", "p95 seconds"],
        rows=latency_rows,
        series=["p50 seconds", "p95 seconds"],
        y_min=0,
    )
    drafts_chart = ChartTable(
        name="drafts",
        title="Assistant turns started from a model draft",
        x_label="Day (UTC)",
        y_label="Share of human-written assistant turns",
        columns=[
            "Day",
            "Assistant turns",
            "From a draft",
            "Share from a draft",
            "Median edit distance",
        ],
        rows=draft_rows,
        series=["Share from a draft"],
        y_min=0,
        y_max=1,
        percent=True,
    )
    active_chart = ChartTable(
        name="active-trainers",
        title="Active trainers per day",
        x_label="Day (UTC)",
        y_label="Trainers who finished a task",
        columns=["Day", "Active trainers"],
        rows=active_rows,
        series=["Active trainers"],
        y_min=0,
    )

    all_seconds = h.empty(h.TASK_SECONDS_EDGES)
    for counts in seconds_by_kind.values():
        h.add_counts(all_seconds, counts)
    headlines = [
        Headline("Tasks done", str(sum(r[-1] for r in throughput.rows))),
        Headline(
            "Median time per task", _seconds(h.quantile(all_seconds, h.TASK_SECONDS_EDGES, 0.5))
        ),
        Headline(
            "Generation p50 / p95",
            f"{_seconds(h.quantile(generation_total, h.GENERATION_SECONDS_EDGES, 0.5))} / "
            f"{_seconds(h.quantile(generation_total, h.GENERATION_SECONDS_EDGES, 0.95))}",
        ),
        Headline(
            "Turns from a draft",
            f"{drafted_total / turns_total:.0%}" if turns_total else "–",
        ),
        Headline(
            "Median edit distance",
            _number(h.quantile(edits_total, h.EDIT_DISTANCE_EDGES, 0.5)),
        ),
        Headline("Open reports", str(open_reports(project))),
    ]
    charts = [throughput, queues, timing, latency_chart, drafts_chart]
    if trainer_id is None:
        charts.append(active_chart)
    return Overview(headlines=headlines, charts=charts)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} characters"

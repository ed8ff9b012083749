"""The model leaderboard: candidate models ranked by Bradley–Terry strength over the consensus
orders of completed sets, with intervals and head-to-head win rates, from the daily rollups.

A win is one consensus pair: in a set whose consensus puts a reply by model A above a reply by
model B (different models), A beat B once. Human-written candidates play as "human". Strengths
are fitted with a weak prior (one virtual win and one loss against a reference of strength 1 per
model), so a model that never lost or never won still gets a finite strength; with hundreds of
games it moves strengths by a negligible amount.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from annotations.models import Project
from annotations.reliability import Strength, bradley_terry, win_rates
from labelling.dashboards.charts import ChartTable
from labelling.dashboards.selectors import DateSpan, model_wins

PRIOR = 1.0


@dataclass(frozen=True)
class Leaderboard:
    names: list[str]  # strongest first
    strengths: list[Strength]
    games: int
    charts: list[ChartTable]  # strengths, then win rates
    # rates[i][j]: share of games names[i] won against names[j] (None: they never met)
    rates: list[list[float | None]]


def _probability(strength: float) -> float:
    """Chance of beating a model of average strength (log-strengths are centred on 0)."""
    return 1 / (1 + math.exp(-strength))


def leaderboard(*, project: Project, span: DateSpan) -> Leaderboard:
    played = model_wins(project, span)
    names, wins = played.names, played.wins
    games = sum(map(sum, wins))
    strengths = bradley_terry(names, wins, prior=PRIOR) if len(names) > 1 else []
    # Reordered strongest first.
    ordered = [s.name for s in strengths] or names
    position = [names.index(name) for name in ordered]
    rates = win_rates(ordered, [[wins[i][j] for j in position] for i in position])
    strength_chart = ChartTable(
        name="strengths",
        title="Bradley–Terry strength by model",
        x_label="Model",
        y_label="Log-strength (0 = average)",
        columns=[
            "Model",
            "Strength",
            "Low (95%)",
            "High (95%)",
            "Chance to beat average",
            "Games",
        ],
        rows=[
            (s.name, s.strength, s.low, s.high, _probability(s.strength), s.comparisons)
            for s in strengths
        ],
        series=["Strength", "Low (95%)", "High (95%)"],
        kind="bar",
        description="Strongest first. The interval is a 95% Wald interval from the fit's "
        "observed information; two models whose intervals overlap much are not told apart yet.",
    )
    rate_chart = ChartTable(
        name="win-rates",
        title="Win rate against each other model",
        x_label="Model",
        y_label="Share of games won",
        columns=["Model", *(f"vs {name}" for name in ordered)],
        rows=[(name, *row) for name, row in zip(ordered, rates, strict=True)],
        series=[f"vs {name}" for name in ordered],
        kind="bar",
        y_min=0,
        y_max=1,
        percent=True,
        description="Row model's share of the consensus pairs it won against the column model.",
    )
    return Leaderboard(
        names=ordered,
        strengths=strengths,
        games=games,
        charts=[strength_chart, rate_chart],
        rates=rates,
    )

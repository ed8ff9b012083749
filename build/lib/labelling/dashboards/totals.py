"""A trainer's sums (of `TrainerDay` rows, or of one day's work while rollups gather it): what
the trainers, trainer and length-bias pages read. Pure Python, no queries."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from labelling.dashboards import histograms as h

# The `TrainerDay` columns a `TrainerTotals` is made of, besides the trainer.
COUNTS = (
    "rankings",
    "excluded_rankings",
    "agreement_sum",
    "agreement_count",
    "all_bad",
    "flags_raised",
    "length_pairs",
    "longer_preferred",
    "drafts_used",
    "drafts_unedited",
)
FIELDS = ("tasks_done", "task_seconds", "length_buckets", *COUNTS)


def empty_length_buckets() -> list[list[int]]:
    return [[0, 0] for _ in h.LENGTH_EDGES]


@dataclass
class TrainerTotals:
    user_id: int
    username: str = ""
    tasks_done: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    task_seconds: list[int] = field(default_factory=lambda: h.empty(h.TASK_SECONDS_EDGES))
    rankings: int = 0
    excluded_rankings: int = 0
    agreement_sum: float = 0.0
    agreement_count: int = 0
    all_bad: int = 0
    flags_raised: int = 0
    length_pairs: int = 0
    longer_preferred: int = 0
    length_buckets: list[list[int]] = field(default_factory=empty_length_buckets)
    drafts_used: int = 0
    drafts_unedited: int = 0

    def add(self, row: dict, sign: int = 1) -> TrainerTotals:
        """Add (or with sign=-1 take away) a row's figures (a dict with the FIELDS)."""
        tasks = self.tasks_done
        if not isinstance(tasks, defaultdict):
            self.tasks_done = tasks = defaultdict(int, tasks)
        for kind, count in row["tasks_done"].items():
            tasks[kind] += sign * count
        seconds = self.task_seconds
        for index, count in enumerate(row["task_seconds"]):
            seconds[index] += sign * count
        for bucket, (pairs, won) in zip(self.length_buckets, row["length_buckets"], strict=False):
            bucket[0] += sign * pairs
            bucket[1] += sign * won
        for name in COUNTS:
            setattr(self, name, getattr(self, name) + sign * row[name])
        return self

    def fields(self) -> dict:
        """The FIELDS as a `TrainerDay` takes them (copies, so later adds do not alias)."""
        values = {name: getattr(self, name) for name in COUNTS}
        values["tasks_done"] = {kind: n for kind, n in self.tasks_done.items() if n}
        values["task_seconds"] = list(self.task_seconds)
        values["length_buckets"] = [list(bucket) for bucket in self.length_buckets]
        return values

    def copy(self) -> TrainerTotals:
        return TrainerTotals(user_id=self.user_id, username=self.username).add(self.fields())

    @property
    def volume(self) -> int:
        return sum(self.tasks_done.values())

    @property
    def median_seconds(self) -> float | None:
        return h.quantile(self.task_seconds, h.TASK_SECONDS_EDGES, 0.5)

    @property
    def agreement(self) -> float | None:
        return self.agreement_sum / self.agreement_count if self.agreement_count else None

    @property
    def all_bad_share(self) -> float | None:
        return self.all_bad / self.rankings if self.rankings else None

    @property
    def longer_share(self) -> float | None:
        return self.longer_preferred / self.length_pairs if self.length_pairs else None

    @property
    def unedited_share(self) -> float | None:
        return self.drafts_unedited / self.drafts_used if self.drafts_used else None

"""Units of work handed to trainers, with their leases and autosaved drafts; the generation
requests that sample each ranking set."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotations.models import Conversation, Message, Project, RankingSet
from trainer_bridge.models import GenerationRequest


class Task(models.Model):
    """One trainer's unit of work: open -> assigned (leased) -> done, or expired / cancelled."""

    class Kind(models.TextChoices):
        DEMONSTRATION = "demonstration", "Write a demonstration"
        RANKING = "ranking", "Rank replies"
        LABEL = "label", "Label messages"
        REVIEW = "review", "Review a flag"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        ASSIGNED = "assigned", "Assigned"
        DONE = "done", "Done"
        EXPIRED = "expired", "Expired"
        CANCELLED = "cancelled", "Cancelled"

    # Every claim, submit and priority change rewrites a task's entry in each of its indexes, so
    # project and assignee have none of their own: the composite indexes below start with them.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="tasks", db_index=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tasks",
        db_index=False,
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    priority = models.IntegerField(
        default=0,
        help_text="Higher is handed out first (e.g. ranking slots of sets that are nearly done).",
    )
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks"
    )
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks"
    )
    ranking_set = models.ForeignKey(
        RankingSet, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks"
    )
    autosave = models.JSONField(default=dict, blank=True)
    autosaved_at = models.DateTimeField(null=True, blank=True)
    # Which page load wrote the autosave, so that a late save from an older page (one still in
    # flight when the trainer reloaded) never winds back what a newer page wrote. Every page load
    # of the task gets the next `pages_opened` number; `autosave_page` and `autosave_seq` are the
    # page and its per-page sequence number of the stored save (0: none, or an API client), and
    # `autosave_revision` counts the saves stored, so a page learns when another one wrote.
    pages_opened = models.PositiveIntegerField(default=0)
    autosave_page = models.PositiveIntegerField(default=0)
    autosave_seq = models.PositiveBigIntegerField(default=0)
    autosave_revision = models.PositiveIntegerField(default=0)
    skip_reason = models.CharField(max_length=500, blank=True)
    result = models.JSONField(
        default=dict, blank=True, help_text="What the submission stored (ids), for repeat submits."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    assigned_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["project", "kind", "state", "created_at"]),
            # The claim query walks open tasks in this order and stops at the first eligible one.
            models.Index(
                fields=["project", "kind", "state", "-priority", "id"], name="task_claim_order"
            ),
            models.Index(fields=["state", "lease_expires_at"]),
            models.Index(fields=["assignee", "state"]),
            # The dashboards' refresh: the project's tasks done since its previous run.
            models.Index(
                fields=["project", "done_at"],
                condition=Q(state="done", done_at__isnull=False),
                name="task_done_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(state="assigned")
                | Q(assignee__isnull=False, lease_expires_at__isnull=False),
                name="task_assigned_has_assignee_and_lease",
            ),
            models.CheckConstraint(
                condition=~Q(kind="ranking") | Q(ranking_set__isnull=False),
                name="task_ranking_has_set",
            ),
            models.CheckConstraint(
                condition=~Q(kind="label") | Q(message__isnull=False),
                name="task_label_has_message",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.state})"


class TaskSkip(models.Model):
    """A trainer passed on a task; they are not offered it again."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="skips")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["task", "user"], name="task_skip_once_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} skipped task {self.task_id}"


class RankingSetSampling(models.Model):
    """A generation request that samples candidates for a ranking set while it is assembled."""

    ranking_set = models.ForeignKey(RankingSet, on_delete=models.CASCADE, related_name="samplings")
    generation_request = models.ForeignKey(
        GenerationRequest, on_delete=models.CASCADE, related_name="ranking_set_samplings"
    )

    class Meta:
        ordering = ["ranking_set", "generation_request"]
        constraints = [
            models.UniqueConstraint(
                fields=["ranking_set", "generation_request"], name="ranking_set_sampling_once"
            ),
        ]

    def __str__(self) -> str:
        return f"Generation {self.generation_request_id} samples set {self.ranking_set_id}"


# --- Dashboard rollups -------------------------------------------------------------------------
# Sums the dashboards read instead of the raw rows, one row per project and day (and trainer, or
# dimension value). Written only by `labelling.dashboards.rollups`; see its docstring for how
# they are kept current and how stale they may be.


class DashboardState(models.Model):
    """How far a project's rollups have been brought: rows up to `refreshed_through` are in."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="dashboard_state"
    )
    refreshed_through = models.DateTimeField(null=True, blank=True)
    rebuilt_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Dashboards of {self.project} through {self.refreshed_through}"


class DailyRollup(models.Model):
    """A project's day: completed sets (by `completed_at`), tasks done, drafts, generations."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    sets_completed = models.PositiveIntegerField(default=0)
    agreement_sum = models.FloatField(default=0.0)
    agreement_count = models.PositiveIntegerField(default=0)
    # {"0.6667": sets}: set agreements rounded to 4 places, for the distribution and bootstrap.
    agreement_values = models.JSONField(default=dict)
    # Each non-excluded ranking's agreement with the consensus of its set's other rankings
    # (`Ranking.consensus_agreement`): what a trainer's own figure is compared with.
    ranking_agreement_sum = models.FloatField(default=0.0)
    ranking_agreement_count = models.PositiveIntegerField(default=0)
    # Summed `rank_coincidences` of the non-excluded rankings (Krippendorff's alpha).
    coincidences = models.JSONField(default=list)
    # {flag name: FleissTally.to_json()} over the non-excluded rankings' flags.
    flag_tallies = models.JSONField(default=dict)
    # {winner: {loser: n}} from each set's consensus; a human-written candidate is "human".
    model_wins = models.JSONField(default=dict)
    # {kind: n} and {kind: [histogram of seconds from assignment to done]}.
    tasks_done = models.JSONField(default=dict)
    task_seconds = models.JSONField(default=dict)
    # Generation requests finished this day: histogram of seconds from queued to finished.
    generation_seconds = models.JSONField(default=list)
    generations_failed = models.PositiveIntegerField(default=0)
    # Human-written assistant turns, those started from a model draft, their edit distances.
    assistant_turns = models.PositiveIntegerField(default=0)
    from_draft = models.PositiveIntegerField(default=0)
    edit_distances = models.JSONField(default=list)
    active_trainers = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["project", "day"]
        constraints = [
            models.UniqueConstraint(fields=["project", "day"], name="daily_rollup_once"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id} on {self.day}"


class TrainerDay(models.Model):
    """A trainer's running totals in a project up to and including `day` (a row only for days
    they did something): tasks done by then, and their rankings of the sets completed by then
    (quality figures are known only once a set completes).

    Running totals, so that a date range's figures for every trainer come from two rows per
    trainer (the last on or before the range's end, less the last before its start) instead of
    one row per trainer and day.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    tasks_done = models.JSONField(default=dict)
    task_seconds = models.JSONField(default=list)
    rankings = models.PositiveIntegerField(default=0)
    excluded_rankings = models.PositiveIntegerField(default=0)
    agreement_sum = models.FloatField(default=0.0)
    agreement_count = models.PositiveIntegerField(default=0)
    all_bad = models.PositiveIntegerField(default=0)
    flags_raised = models.PositiveIntegerField(default=0)
    length_pairs = models.PositiveIntegerField(default=0)
    longer_preferred = models.PositiveIntegerField(default=0)
    # [[pairs, longer won], ...] per length-difference bucket (rollups.LENGTH_EDGES).
    length_buckets = models.JSONField(default=list)
    drafts_used = models.PositiveIntegerField(default=0)
    drafts_unedited = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["project", "day", "user"]
        indexes = [models.Index(fields=["project", "user", "day"])]
        constraints = [
            models.UniqueConstraint(fields=["project", "day", "user"], name="trainer_day_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.project_id} on {self.day}"


class GroupDay(models.Model):
    """Set agreement of a day's completed sets grouped by candidate model, prompt language or
    conversation tag (a set counts once under each of its models and tags)."""

    class Dimension(models.TextChoices):
        MODEL = "model", "Candidate model"
        LANGUAGE = "language", "Prompt language"
        TAG = "tag", "Tag"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    dimension = models.CharField(max_length=16, choices=Dimension.choices)
    value = models.CharField(max_length=200)
    sets = models.PositiveIntegerField(default=0)
    agreement_sum = models.FloatField(default=0.0)
    agreement_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["project", "day", "dimension", "value"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "day", "dimension", "value"], name="group_day_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dimension}={self.value} in {self.project_id} on {self.day}"

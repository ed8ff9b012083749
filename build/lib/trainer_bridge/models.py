"""Requests for model-written drafts and candidates and the link from each to the replies it
wrote; training runs with their metrics; and reward models scored against fresh human rankings.

The replies themselves are messages of `annotations` (written through its services), and so are
the model versions a run registers; what is the trainer bridge's own is the request, which of its
n outputs each message is, the run that trained a model, and the evaluations of reward models.
"""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


class GenerationRequest(models.Model):
    """A request for model-written drafts or candidates after a context message."""

    class Purpose(models.TextChoices):
        DRAFT = "draft", "Draft"
        CANDIDATES = "candidates", "Candidates"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(
        "annotations.Project", on_delete=models.CASCADE, related_name="generations"
    )
    context = models.ForeignKey(
        "annotations.Message",
        on_delete=models.CASCADE,
        related_name="generation_requests",
        help_text="The last message of the context; replies become its children.",
    )
    model_version = models.ForeignKey(
        "annotations.ModelVersion", on_delete=models.PROTECT, related_name="generation_requests"
    )
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    n = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    # A SamplingParams as JSON (trainer_bridge.sampling_params).
    params = models.JSONField(default=dict, blank=True)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.QUEUED, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    worker = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at"]
        indexes = [
            models.Index(
                fields=["state", "model_version", "queued_at"], name="generation_queue_idx"
            ),
            # The dashboards' refresh: the project's generations finished since its previous run.
            models.Index(
                fields=["project", "finished_at"],
                condition=Q(finished_at__isnull=False),
                name="generation_finished_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(n__gte=1), name="generation_n_positive"),
            models.CheckConstraint(
                condition=~Q(state="running") | Q(started_at__isnull=False),
                name="generation_running_has_start",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} x{self.n} from {self.model_version} ({self.state})"


class GenerationOutputManager(models.Manager):
    """Outputs come with their messages: whoever reads an output reads its text."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().select_related("message")


class GenerationOutput(models.Model):
    """One of a request's n replies: the message that holds it, and which output it is.

    Unique per (request, output index), so a redelivered result never stores replies twice.
    """

    request = models.ForeignKey(GenerationRequest, on_delete=models.CASCADE, related_name="outputs")
    message = models.OneToOneField(
        "annotations.Message", on_delete=models.CASCADE, related_name="generation_output"
    )
    output_index = models.PositiveSmallIntegerField(
        help_text="Which of the request's n outputs this is."
    )

    objects = GenerationOutputManager()

    class Meta:
        ordering = ["request", "output_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "output_index"], name="generation_output_once"
            ),
        ]

    def __str__(self) -> str:
        return f"Output {self.output_index} of generation {self.request_id}"


class TrainingRun(models.Model):
    """One SFT, reward-model or PPO run on a training backend, from its snapshots to its model.

    Queued when asked for; running once a backend has it; succeeded when its model is stored and
    registered (`result_model`), or failed / cancelled. A run that loses its worker is queued
    again or failed by the watchdog, never left running.
    """

    class Stage(models.TextChoices):
        SFT = "sft", "Supervised fine-tuning (SFT)"
        RM = "rm", "Reward model (RM)"
        PPO = "ppo", "Policy optimisation (PPO)"

    class Backend(models.TextChoices):
        LOCAL = "local", "Local (accelerate launch on a train worker)"
        COMMAND = "command", "Command (a cluster job template)"

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED)

    project = models.ForeignKey(
        "annotations.Project", on_delete=models.CASCADE, related_name="training_runs"
    )
    stage = models.CharField(max_length=8, choices=Stage.choices)
    snapshots = models.ManyToManyField(
        "exports.ExportSnapshot",
        related_name="training_runs",
        help_text="The snapshots it trains on (their train splits; validation splits to evaluate).",
    )
    base_model = models.ForeignKey(
        "annotations.ModelVersion", on_delete=models.PROTECT, related_name="training_runs_from"
    )
    reward_model = models.ForeignKey(
        "annotations.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="training_runs_rewarded",
        help_text="PPO only: the reward model the policy is tuned against.",
    )
    # Hyperparameters.to_json() of trainer_bridge.training.hyperparameters: every value,
    # defaults included.
    hyperparameters = models.JSONField(default=dict)
    backend = models.CharField(max_length=16, choices=Backend.choices, default=Backend.LOCAL)
    state = models.CharField(
        max_length=16, choices=State.choices, default=State.QUEUED, db_index=True
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    log_tail = models.TextField(blank=True, help_text="The last lines of the run's log.")
    rows = models.JSONField(
        default=dict, blank=True, help_text="Rows the trainer read: train, validation, dropped."
    )
    summary = models.JSONField(
        default=dict, blank=True, help_text="Final figures the trainer reported."
    )
    result_model = models.OneToOneField(
        "annotations.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="training_run",
        help_text="The model this run trained, once stored and registered.",
    )
    result_folder = models.CharField(
        max_length=300, blank=True, help_text="Storage path of the stored model."
    )
    token_hash = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of the current attempt's run token (a command job reports with it).",
    )
    worker = models.CharField(max_length=200, blank=True)
    external_id = models.CharField(
        max_length=500, blank=True, help_text="What the submit command printed (a job id)."
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="training_runs",
    )
    # A client's key for one start (the API's Idempotency-Key header, the start form's hidden
    # field): the same key from the same user names this run instead of starting another.
    idempotency_key = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(
        auto_now_add=True, help_text="When it was last queued (created, or requeued)."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the worker or job running it."
    )
    finish_reported_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the trainer reported success; the model is being stored from then on.",
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"]),
            models.Index(fields=["state", "heartbeat_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(stage="ppo") | Q(reward_model__isnull=True),
                name="training_reward_model_only_for_ppo",
            ),
            models.CheckConstraint(
                condition=~Q(stage="ppo") | Q(reward_model__isnull=False),
                name="training_ppo_has_reward_model",
            ),
            models.CheckConstraint(
                condition=~Q(state="succeeded") | Q(result_model__isnull=False),
                name="training_succeeded_has_model",
            ),
            models.UniqueConstraint(
                fields=["started_by", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="training_run_one_per_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stage} run {self.pk} of {self.project} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED_STATES


class TrainingMetric(models.Model):
    """What a run reported at one step: loss, accuracy, reward, KL, learning rate (as the stage
    has them). One row per step, so a chart over thousands of steps reads only what it draws."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    values = models.JSONField(default=dict)

    class Meta:
        ordering = ["run", "step"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step"], name="training_metric_once_per_step"),
        ]

    def __str__(self) -> str:
        return f"Step {self.step} of run {self.run_id}"


class RewardEvaluation(models.Model):
    """A reward model scored against a project's complete ranking sets that none of its training
    snapshots held: pairwise accuracy against the human consensus, overall and per round (a
    round is the set of models that wrote a ranking set's candidates)."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(
        "annotations.Project", on_delete=models.CASCADE, related_name="reward_evaluations"
    )
    reward_model = models.ForeignKey(
        "annotations.ModelVersion", on_delete=models.CASCADE, related_name="reward_evaluations"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    sets = models.PositiveIntegerField(default=0)
    pairs = models.PositiveIntegerField(default=0)
    correct = models.PositiveIntegerField(default=0)
    sets_left_out = models.PositiveIntegerField(
        default=0, help_text="Complete sets left out because a training snapshot held them."
    )
    # [{"round": "tiny-policy", "sets": 12, "pairs": 60, "correct": 51, "accuracy": 0.85}, ...]
    rounds = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["reward_model", "-created_at"])]

    def __str__(self) -> str:
        return f"Evaluation {self.pk} of {self.reward_model} ({self.state})"

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.pairs if self.pairs else None

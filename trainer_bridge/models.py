"""Requests for model-written drafts and candidates, and the link from each to the replies it wrote.

The replies themselves are messages of `annotations` (written through its services); what is the
trainer bridge's own is the request and which of its n outputs each message is.
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
            )
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

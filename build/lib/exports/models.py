"""Export snapshots: one immutable dataset folder per export, with its state and manifest."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotations.models import Project
from exports.choices import KIND_LABELS


class ExportSnapshot(models.Model):
    """One export of a project's data: queued, then written by a worker into storage, then done.

    Once done, its files and manifest never change; a new export is a new snapshot.
    """

    Kind = models.TextChoices(
        "Kind", [(k.value, (k.value, label)) for k, label in KIND_LABELS.items()]
    )

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="export_snapshots")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    choices = models.JSONField(default=dict, help_text="Every choice, defaults included.")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    rows_expected = models.BigIntegerField(null=True, blank=True)
    rows_written = models.BigIntegerField(default=0)
    folder = models.CharField(
        max_length=300, blank=True, help_text="Storage path of the snapshot's folder, once done."
    )
    manifest = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="export_snapshots",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the worker writing it."
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
                condition=~Q(state="done") | Q(manifest__isnull=False),
                name="export_done_has_manifest",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} export {self.pk} of {self.project} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (self.State.DONE, self.State.FAILED)

    @property
    def progress(self) -> float | None:
        """Share of expected rows written (0..1); None before the count is known."""
        if self.state == self.State.DONE:
            return 1.0
        if not self.rows_expected:
            return None
        return min(1.0, self.rows_written / self.rows_expected)

    def split_names(self) -> list[str]:
        return list((self.manifest or {}).get("splits", {}))

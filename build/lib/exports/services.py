"""Writes of exports: asking for one, building it (in a worker or for the CLI), and the watchdog
that never leaves a snapshot whose worker died "running"."""

from __future__ import annotations

import datetime as dt
import gc
import gzip
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, connections, transaction
from django.utils import timezone

from annotations.access import AccessDenied, can
from annotations.models import ModelVersion, Project
from annotations.queueing import queue_depth, send_after_commit
from annotations.timestamps import iso_utc
from exports.builders import BUILDERS, ExportContext
from exports.builders.common import resolve_annotators
from exports.choices import ExportChoices, ExportKind
from exports.models import ExportSnapshot
from exports.pseudonyms import Pseudonyms
from exports.writer import (
    LengthBias,
    Progress,
    balance_for_length,
    manifest_for,
    write_manifest_and_card,
    write_rows,
)

logger = logging.getLogger(__name__)
State = ExportSnapshot.State


def _settings() -> dict[str, Any]:
    return settings.PARLEY.get("EXPORTS", {})


def export_choices_clean(*, project: Project, kind: Any, choices: Any) -> ExportChoices:
    """The kind and choices checked against the project, every error keyed by its field.

    Trainers to exclude may be named by username or pseudonym; they are stored as pseudonyms,
    so no username reaches a manifest.
    """
    if not isinstance(kind, str) or kind not in ExportKind.__members__.values():
        known = ", ".join(k.value for k in ExportKind)
        raise ValidationError({"kind": f"Unknown kind {str(kind)[:30]!r}; use one of: {known}."})
    cleaned = ExportChoices.from_json(choices, kind=kind)
    errors: dict[str, str] = {}
    flag_names = {
        label["name"] for label in project.label_schema or [] if label.get("kind") == "flag"
    }
    if unknown := sorted(set(cleaned.exclude_flags) - flag_names):
        errors["exclude_flags"] = (
            f"Unknown flag {unknown[0][:50]!r}; this project's flags are: "
            f"{', '.join(sorted(flag_names)) or 'none'}."
        )
    known_models = set(
        ModelVersion.objects.filter(name__in=cleaned.model_versions).values_list("name", flat=True)
    )
    if unknown := sorted(set(cleaned.model_versions) - known_models - {"human"}):
        errors["model_versions"] = (
            f"No model version named {unknown[0][:50]!r} ('human' for people)."
        )
    try:
        user_ids = resolve_annotators(project, cleaned.exclude_annotators)
    except ValueError as exc:
        errors["exclude_annotators"] = str(exc)
        user_ids = frozenset()
    if errors:
        raise ValidationError(errors)
    pseudonym = Pseudonyms(project.pk)
    return ExportChoices(
        **{
            **cleaned.__dict__,
            "exclude_annotators": tuple(sorted(pseudonym(uid) for uid in user_ids)),
        }
    )


@transaction.atomic
def export_request(
    *, project: Project, user: AbstractBaseUser, kind: Any, choices: Any = None
) -> ExportSnapshot:
    """A queued snapshot; a worker on the `default` queue builds it after the commit.

    The same person asking again for the same kind and choices while that export is still
    queued or running (a double click, a client retrying) gets that export, not a second one:
    requests of one project take turns on the project's row, so two at once cannot both miss it.
    """
    if not can(user, project, "export"):
        raise AccessDenied(project, "export")
    cleaned = export_choices_clean(project=project, kind=kind, choices=choices)
    Project.objects.select_for_update().filter(pk=project.pk).first()
    same = (
        ExportSnapshot.objects.filter(
            project=project,
            created_by=user,
            kind=kind,
            choices=cleaned.to_json(),
            state__in=[State.QUEUED, State.RUNNING],
        )
        .order_by("-pk")
        .first()
    )
    if same is not None:
        return same
    snapshot = ExportSnapshot.objects.create(
        project=project, kind=kind, choices=cleaned.to_json(), created_by=user
    )
    _queue(snapshot.pk)
    return snapshot


def _queue(snapshot_id: int) -> None:
    from exports.tasks import build_export

    send_after_commit(lambda: build_export.delay(snapshot_id), what=f"export {snapshot_id}")


def export_write(
    *,
    project: Project,
    kind: ExportKind | str,
    choices: ExportChoices,
    out_dir: Path,
    progress: Progress | None = None,
    expected: Progress | None = None,
    snapshot_id: int | None = None,
    created_by: str | None = None,
) -> dict[str, Any]:
    """Build the dataset into `out_dir` (JSONL per split, manifest.json, README.md).

    `expected` is told the expected row count before any row is written; `progress` the rows
    written so far, every few thousand rows. Returns the manifest.
    """
    kind = ExportKind(kind)
    builder = BUILDERS[kind]
    ctx = ExportContext(
        project=project,
        choices=choices,
        excluded_annotators=resolve_annotators(project, choices.exclude_annotators),
    )
    if expected is not None:
        expected(builder.expected_rows(ctx))
    bias = LengthBias() if kind == ExportKind.PREFERENCES else None
    if choices.length_balanced:
        # Two passes over the data: the counters restart with each, so they count one.
        rows = balance_for_length(lambda: builder.rows(_fresh(ctx)), bias)
    else:
        rows = builder.rows(ctx)
    with _fewer_collections():
        result = write_rows(
            rows=rows,
            out_dir=out_dir,
            kind=kind,
            choices=choices,
            progress=progress,
            length_bias=bias,
        )
    left_out = dict(ctx.counters)
    if bias is not None and choices.length_balanced:
        left_out["pairs_dropped_for_length_balance"] = bias.dropped_for_balance
    manifest = manifest_for(
        result=result,
        kind=kind,
        choices=choices,
        project_slug=project.slug,
        snapshot_id=snapshot_id,
        rows_left_out=left_out,
        created_by=created_by,
        created_at=iso_utc(timezone.now()),
    )
    write_manifest_and_card(out_dir, manifest)
    return manifest


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector far less often while rows are built.

    An export makes millions of short-lived lists and dicts (decoded orders, rows) that
    reference counting frees at once; at Python's default, the collector also ran every 700 of
    them and scanned the chunks held meanwhile: a fifth of the export's time
    (benchmarks/export.py). The previous thresholds come back afterwards.
    """
    before = gc.get_threshold()
    gc.set_threshold(100_000, before[1], before[2])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _fresh(ctx: ExportContext) -> ExportContext:
    ctx.counters.clear()
    return ctx


def export_build(*, snapshot_id: int) -> ExportSnapshot | None:
    """Build a queued snapshot into storage (run by the Celery task; safe to run twice).

    A snapshot already done or failed is left alone; one another worker is writing (a recent
    heartbeat) too. A snapshot whose worker died is taken over, up to the attempt limit, then
    failed with the reason. Any error fails the snapshot with its message; nothing half-written
    is ever marked done: files are written locally, then stored, then the row says done.
    """
    snapshot = _claim(snapshot_id)
    if snapshot is None:
        return None
    project = snapshot.project
    # A folder per attempt: a worker that was given up for dead but still runs never writes
    # into the files of the attempt that took over.
    prefix = f"exports/{project.slug}/{snapshot.pk}/attempt-{snapshot.attempts}"
    # Every write below is for this attempt only: once another worker has taken the snapshot
    # over (or the watchdog failed it), this one's updates change nothing.
    mine = ExportSnapshot.objects.filter(
        pk=snapshot.pk, state=State.RUNNING, attempts=snapshot.attempts
    )
    try:
        choices = ExportChoices.from_json(snapshot.choices, kind=snapshot.kind)
        with (
            tempfile.TemporaryDirectory(prefix="parley-export-") as tmp,
            _Heartbeat(mine) as heartbeat,
        ):
            out_dir = Path(tmp)
            manifest = export_write(
                project=project,
                kind=snapshot.kind,
                choices=choices,
                out_dir=out_dir,
                progress=heartbeat,
                expected=lambda n: mine.update(rows_expected=n, heartbeat_at=timezone.now()),
                snapshot_id=snapshot.pk,
                created_by=snapshot.created_by.get_username() if snapshot.created_by else None,
            )
            _store_folder(out_dir, prefix)
    except Exception as exc:
        logger.exception("Export %s failed", snapshot.pk)
        mine.update(
            state=State.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
        snapshot.refresh_from_db()
        return snapshot
    mine.update(
        state=State.DONE,
        folder=prefix,
        manifest=manifest,
        rows_written=manifest["rows"],
        rows_expected=manifest["rows"],
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
        error="",
    )
    snapshot.refresh_from_db()
    return snapshot


@transaction.atomic
def _claim(snapshot_id: int) -> ExportSnapshot | None:
    # Lock the snapshot's row only: PostgreSQL refuses FOR UPDATE on the nullable side of the
    # outer join to created_by.
    snapshot = (
        ExportSnapshot.objects.select_for_update(of=("self",))
        .select_related("project", "created_by")
        .filter(pk=snapshot_id)
        .first()
    )
    if snapshot is None or snapshot.is_finished:
        return None
    now = timezone.now()
    stale = now - dt.timedelta(seconds=_settings().get("STALE_SECONDS", 120))
    if snapshot.state == State.RUNNING and snapshot.heartbeat_at and snapshot.heartbeat_at > stale:
        return None  # another worker is writing it
    max_attempts = _settings().get("MAX_ATTEMPTS", 3)
    if snapshot.attempts >= max_attempts:
        snapshot.state = State.FAILED
        snapshot.error = (
            f"The worker writing this export stopped {snapshot.attempts} times "
            f"(the limit is {max_attempts}); it was not retried again."
        )
        snapshot.finished_at = now
        snapshot.save(update_fields=["state", "error", "finished_at"])
        return None
    snapshot.state = State.RUNNING
    snapshot.attempts += 1
    snapshot.started_at = now
    snapshot.heartbeat_at = now
    snapshot.rows_written = 0
    snapshot.save(update_fields=["state", "attempts", "started_at", "heartbeat_at", "rows_written"])
    return snapshot


class _Heartbeat:
    """The writing worker's sign of life: rows written when the writer reports progress (at
    most once a second), and a beat from a timer thread every STALE_SECONDS / 4 while the build
    runs, since counting rows, the first pass of length balancing and storing the files report
    none for a while.

    The timer thread has a database connection of its own, which could not see (SQLite: would
    wait on) a transaction still open here, so inside one only the progress reports beat.
    """

    def __init__(self, mine) -> None:
        self.mine = mine
        self.written = 0
        self.last = 0.0
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def __call__(self, written: int) -> None:
        self.written = written
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            self.mine.update(rows_written=written, heartbeat_at=timezone.now())

    def _beat(self) -> None:
        interval = max(1.0, _settings().get("STALE_SECONDS", 120) / 4)
        try:
            while not self.stop.wait(interval):
                self.mine.update(rows_written=self.written, heartbeat_at=timezone.now())
        finally:
            connections.close_all()  # this thread's connection

    def __enter__(self) -> _Heartbeat:
        if not connection.in_atomic_block:
            self.thread = threading.Thread(target=self._beat, name="export-heartbeat", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=30)


def _store_folder(out_dir: Path, prefix: str) -> None:
    """Every file of `out_dir` into storage under `prefix`, replacing what an earlier attempt
    left there."""
    for path in sorted(out_dir.iterdir()):
        name = f"{prefix}/{path.name}"
        if default_storage.exists(name):
            default_storage.delete(name)
        with path.open("rb") as handle:
            stored = default_storage.save(name, File(handle, name=path.name))
        if stored != name:  # pragma: no cover - a storage that renames despite the delete
            raise RuntimeError(f"Storage saved {name} as {stored}.")


def exports_requeue_stuck() -> tuple[int, int]:
    """Running snapshots with no sign of life for STALE_SECONDS: queue them again, or fail them
    once they have used their attempts. Returns (requeued, failed)."""
    stale = timezone.now() - dt.timedelta(seconds=_settings().get("STALE_SECONDS", 120))
    max_attempts = _settings().get("MAX_ATTEMPTS", 3)
    requeued = failed = 0
    with transaction.atomic():
        stuck = list(
            ExportSnapshot.objects.select_for_update(skip_locked=True).filter(
                state=State.RUNNING, heartbeat_at__lt=stale
            )
        )
        for snapshot in stuck:
            if snapshot.attempts >= max_attempts:
                snapshot.state = State.FAILED
                snapshot.error = (
                    f"The worker writing this export stopped answering, {snapshot.attempts} "
                    f"times (the limit is {max_attempts})."
                )
                snapshot.finished_at = timezone.now()
                snapshot.save(update_fields=["state", "error", "finished_at"])
                failed += 1
            else:
                snapshot.state = State.QUEUED
                snapshot.save(update_fields=["state"])
                _queue(snapshot.pk)
                requeued += 1
    return requeued, failed


EXPORT_QUEUE = "default"


def exports_resend_lost() -> int:
    """Send queued snapshots again whose broker message was lost (a broker restart without
    persistence, a send while it was down): queued for QUEUED_RESEND_SECONDS while the default
    queue holds no message. A second delivery of one still on its way does nothing."""
    cutoff = timezone.now() - dt.timedelta(seconds=_settings().get("QUEUED_RESEND_SECONDS", 120))
    lost = list(
        ExportSnapshot.objects.filter(state=State.QUEUED, created_at__lt=cutoff)
        .order_by("created_at")
        .values_list("pk", flat=True)
    )
    if not lost or queue_depth(EXPORT_QUEUE) != 0:
        return 0
    from exports.tasks import build_export

    for snapshot_id in lost:
        build_export.delay(snapshot_id)
    return len(lost)


def export_open(snapshot: ExportSnapshot, split: str):
    """The stored file of one split, opened for reading (the caller streams and closes it)."""
    if snapshot.state != State.DONE:
        raise ValidationError({"split": "The export is not finished."})
    splits = (snapshot.manifest or {}).get("splits", {})
    if split not in splits:
        known = ", ".join(splits) or "none"
        raise ValidationError({"split": f"No split {str(split)[:30]!r}; this export has: {known}."})
    return default_storage.open(f"{snapshot.folder}/{splits[split]['file']}", "rb")


def export_lines(snapshot: ExportSnapshot, split: str) -> Iterator[bytes]:
    """The lines of one split's stored file (gzip or not), each a JSON row as bytes."""
    name = snapshot.manifest["splits"][split]["file"] if snapshot.manifest else ""
    with export_open(snapshot, split) as stored:
        if name.endswith(".gz"):
            with gzip.open(stored) as unzipped:
                yield from unzipped
        else:
            yield from stored


def export_open_file(snapshot: ExportSnapshot, name: str):
    """manifest.json or README.md of a finished snapshot."""
    if snapshot.state != State.DONE or name not in ("manifest.json", "README.md"):
        raise ValidationError({"file": "No such file in this export."})
    return default_storage.open(f"{snapshot.folder}/{name}", "rb")


__all__ = [
    "export_build",
    "export_choices_clean",
    "export_lines",
    "export_open",
    "export_open_file",
    "export_request",
    "export_write",
    "exports_requeue_stuck",
]

"""A finished snapshot's files as streamed HTTP downloads, shared by the page and the API door."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import FileResponse

from exports.models import ExportSnapshot
from exports.services import export_open, export_open_file

FILES = ("manifest.json", "README.md")
CONTENT_TYPES = {
    ".jsonl": "application/jsonl",
    ".jsonl.gz": "application/gzip",
    "manifest.json": "application/json",
    "README.md": "text/markdown; charset=utf-8",
}


class ExportNotReady(Exception):
    """The snapshot has no files (yet): queued, running or failed. A 409 at the doors."""

    def __init__(self, snapshot: ExportSnapshot) -> None:
        if snapshot.state == ExportSnapshot.State.FAILED:
            message = f"Export {snapshot.pk} failed; it has no files."
        else:
            message = (
                f"Export {snapshot.pk} is {snapshot.state}; its files can be downloaded once it "
                "is done."
            )
        super().__init__(message)
        self.message = message
        self.state = snapshot.state


def download_name(snapshot: ExportSnapshot, part: str) -> str:
    """`alpha-preferences-12-train.jsonl`: project, kind, id and split (or file name)."""
    return f"{snapshot.project.slug}-{snapshot.kind}-{snapshot.pk}-{part}"


def snapshot_download(
    snapshot: ExportSnapshot, *, split: str | None = None, file: str | None = None
) -> FileResponse:
    """One split's file, or manifest.json / README.md, streamed from storage as an attachment.

    ExportNotReady when the snapshot is not done; ValidationError (keyed `split` or `file`)
    for a name it does not have.
    """
    if split is not None and file is not None:
        raise ValidationError({"file": "Ask for a split or a file, not both."})
    if snapshot.state != ExportSnapshot.State.DONE:
        raise ExportNotReady(snapshot)
    if file is not None:
        if file not in FILES:
            raise ValidationError(
                {"file": f"No file {file[:50]!r}; use one of: {', '.join(FILES)}."}
            )
        handle = export_open_file(snapshot, file)
        name, content_type = download_name(snapshot, file), CONTENT_TYPES[file]
    else:
        if not split:
            known = ", ".join(snapshot.split_names())
            raise ValidationError(
                {"split": f"Name a split ({known}) or a file ({', '.join(FILES)})."}
            )
        handle = export_open(snapshot, split)
        stored = snapshot.manifest["splits"][split]["file"]
        suffix = ".jsonl.gz" if stored.endswith(".gz") else ".jsonl"
        name, content_type = download_name(snapshot, f"{split}{suffix}"), CONTENT_TYPES[suffix]
    # FileResponse reads the file in blocks as the client takes them, never all at once.
    return FileResponse(handle, as_attachment=True, filename=name, content_type=content_type)


__all__ = ["ExportNotReady", "download_name", "snapshot_download"]

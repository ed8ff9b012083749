"""Registering model versions the workers can load (the rows are annotations', written by its
service)."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError

from annotations.model_versions import model_version_save
from annotations.models import ModelVersion
from trainer_bridge.loading import source_looks_like_path


def model_version_register(
    *,
    name: str,
    source: str,
    kind: str,
    revision: str = "",
    dtype: str = "auto",
    parent: ModelVersion | None = None,
    notes: str = "",
) -> ModelVersion:
    """Create the ModelVersion called `name`, or bring an existing one up to date.

    A source written as a path must be a directory here (the workers load it with
    `from_pretrained`); a hub id is taken as it is. Registering the same name twice updates it
    in place, so commands and tasks can call this on every run without piling up rows.
    """
    source = source.strip()
    if source_looks_like_path(source) and not Path(source).expanduser().is_dir():
        raise ValidationError({"source": f"{source} is not a directory."})
    return model_version_save(
        name=name,
        source=source,
        kind=kind,
        revision=revision,
        dtype=dtype,
        parent=parent,
        notes=notes,
    )

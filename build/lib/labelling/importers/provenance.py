"""Where imported conversations came from: the dataset name they carry, and the import itself.

Every conversation an import creates carries `meta["dataset"]`, a short name (the caller's, or
the file's stem) that exports filter and count rows by, and `meta["import"]`: the file, the
batch, the format, who imported it and the line it came from.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path

DATASET_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
DATASET_NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-'"


def dataset_name_problem(name: str) -> str | None:
    """Why `name` cannot tag an import's conversations as their dataset, if it cannot."""
    if isinstance(name, str) and DATASET_NAME.fullmatch(name):
        return None
    return f"expected {DATASET_NAME_RULE}, got {name!r}"


def default_dataset_name(filename: str) -> str:
    """The file's stem made into a dataset name: `dolly.jsonl` -> `dolly`, `my data.csv` ->
    `my-data`."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(filename).stem).strip("-.")
    return stem[:64].rstrip("-.") or "import"


@dataclass(frozen=True)
class Provenance:
    """One import of one file, as every conversation it creates records it."""

    dataset: str
    context: dict  # file, batch, format and (when known) the importing user's id

    @classmethod
    def for_file(cls, *, dataset: str, filename: str, fmt: str, user_id: int | None):
        context = {"file": Path(filename).name, "batch": uuid.uuid4().hex, "format": fmt}
        if user_id is not None:
            context["by"] = user_id
        return cls(dataset=dataset, context=context)

    def meta(self, line: int, fields: dict) -> dict:
        """A conversation's meta: `fields` of its format with the dataset, and the import and
        line, added to `fields` itself (not a copy: this runs once per prompt)."""
        fields["dataset"] = self.dataset
        fields["import"] = {**self.context, "line": line}
        return fields

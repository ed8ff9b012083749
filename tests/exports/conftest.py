"""Fixtures and helpers of the exports tests: a project with the Open Assistant sample imported
(100 trees, 212 ranking sets), stored files under a temporary MEDIA_ROOT, built snapshots, and
exports written to a folder and read back."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exports.models import ExportSnapshot
from exports.pseudonyms import Pseudonyms
from exports.services import export_build, export_choices_clean, export_request, export_write
from tests.factories import import_trees
from tests.shared_data import TREES

OASST_TREES = TREES
OASST_MISSING = (
    f"the Open Assistant sample {OASST_TREES} is not there (it lives outside the repository, in "
    "../shared/data or where PARLEY_SHARED_DATA points)"
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Export:
    folder: Path
    manifest: dict
    rows: dict[str, list[dict]]  # split name -> rows, in file order
    raw: dict[str, bytes]  # split name -> the file's bytes as written

    @property
    def all_rows(self) -> list[dict]:
        return [row for rows in self.rows.values() for row in rows]

    @property
    def left_out(self) -> dict[str, int]:
        return self.manifest["left_out"]


def read_split(path: Path) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def export(project, kind: str, folder: Path, **choices: Any) -> Export:
    """Clean the choices as every door does, write the dataset, read every split back."""
    cleaned = export_choices_clean(project=project, kind=kind, choices=choices)
    manifest = export_write(project=project, kind=kind, choices=cleaned, out_dir=folder)
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    rows, raw = {}, {}
    for name, split in manifest["splits"].items():
        path = folder / split["file"]
        raw[name] = path.read_bytes()
        rows[name] = read_split(path)
        assert len(rows[name]) == split["rows"]
    assert manifest["rows"] == sum(len(r) for r in rows.values())
    return Export(folder, manifest, rows, raw)


def pseudonym_of(project, user) -> str:
    return Pseudonyms(project.pk)(user.pk)


def one_split(**choices: Any) -> dict[str, Any]:
    """Choices that put every row in train, so a test can read rows in builder order."""
    return {"validation": 0, **choices}


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    """Snapshots are stored under a folder of this test only."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def oasst_project(project):
    import_trees(project)
    return project


@pytest.fixture
def build_export(oasst_project, engineer):
    """Ask for an export as the engineer and build it here, as the worker would."""

    def build(kind: str = "preferences", choices: dict | None = None) -> ExportSnapshot:
        snapshot = export_request(project=oasst_project, user=engineer, kind=kind, choices=choices)
        built = export_build(snapshot_id=snapshot.pk)
        assert built is not None and built.state == "done", built and built.error
        return built

    return build


@pytest.fixture
def queued_export(project, engineer):
    """A snapshot asked for but not built (no worker in plain db tests)."""

    def make(kind: str = "preferences", choices: dict | None = None) -> ExportSnapshot:
        return export_request(project=project, user=engineer, kind=kind, choices=choices)

    return make

"""Fixtures of the exports tests: a project with the Open Assistant sample imported (100 trees,
212 ranking sets), stored files under a temporary MEDIA_ROOT, and built snapshots."""

import hashlib
from pathlib import Path

import pytest

from exports.models import ExportSnapshot
from exports.services import export_build, export_request
from labelling.importers import prompt_file_import
from tests.shared_data import TREES, shared


def import_trees(project) -> None:
    """The OA sample into `project`: conversations, model/human replies and ranking sets."""
    trees = shared(TREES)
    report = prompt_file_import(project=project, source=trees.read_bytes(), filename="oasst.jsonl")
    assert report.ok, [str(problem) for problem in report.errors]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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

"""Model folders kept through Django's storage API: storing a trained model's folder, and finding
a local copy of one to load with `from_pretrained`.

A model version whose source is `storage:<path>` lives in the default storage under <path>. On a
file-system storage that is a local folder already; on another storage (an object store) a worker
copies it once into `PARLEY_MODEL_DIR/storage/<path>` and loads it from there.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

STORAGE_SCHEME = "storage:"
COMPLETE_MARKER = ".parley-copy-complete"


def storage_source(folder: str) -> str:
    """The ModelVersion source naming a stored folder."""
    return f"{STORAGE_SCHEME}{folder.strip('/')}"


def is_storage_source(source: str) -> bool:
    return source.startswith(STORAGE_SCHEME)


def store_model_folder(local: Path, prefix: str, *, each_file=None) -> int:
    """Every file under `local` (sub-folders too) into storage under `prefix`, replacing what an
    earlier attempt left there; `each_file()` is called before each one (a sign of life).
    Returns the number of files stored."""
    from django.core.files import File
    from django.core.files.storage import default_storage

    stored_files = 0
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        name = f"{prefix}/{path.relative_to(local).as_posix()}"
        if each_file is not None:
            each_file()
        if default_storage.exists(name):
            default_storage.delete(name)
        with path.open("rb") as handle:
            stored = default_storage.save(name, File(handle, name=path.name))
        if stored != name:  # pragma: no cover - a storage that renames despite the delete
            raise RuntimeError(f"Storage saved {name} as {stored}.")
        stored_files += 1
    if not stored_files:
        raise FileNotFoundError(f"{local} holds no files to store.")
    return stored_files


def local_model_folder(source: str, *, model_dir: Path | None = None) -> Path:
    """A local folder holding the stored model `source` names (`storage:<path>`)."""
    from django.conf import settings
    from django.core.files.storage import default_storage

    folder = source[len(STORAGE_SCHEME) :].strip("/")
    if not folder or ".." in Path(folder).parts:
        raise ValueError(f"Not a stored model folder: {source!r}.")
    try:
        in_place = Path(default_storage.path(folder))
    except NotImplementedError:
        in_place = None  # an object store: no local path at all
    if in_place is not None and in_place.is_dir():
        return in_place  # a file-system storage (some others name paths that are not on disk)
    if model_dir is None:
        model_dir = Path(settings.PARLEY["MODEL_DIR"])
    target = Path(model_dir) / "storage" / folder
    if (target / COMPLETE_MARKER).exists():
        return target
    staging = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
    _copy_from_storage(default_storage, folder, staging)
    (staging / COMPLETE_MARKER).touch()
    if target.exists():  # a half copy of an earlier try, or another process won the race
        if (target / COMPLETE_MARKER).exists():
            shutil.rmtree(staging, ignore_errors=True)
            return target
        shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def _copy_from_storage(storage, folder: str, into: Path) -> None:
    directories, files = storage.listdir(folder)
    into.mkdir(parents=True, exist_ok=True)
    for name in files:
        with storage.open(f"{folder}/{name}", "rb") as source, (into / name).open("wb") as out:
            shutil.copyfileobj(source, out)
    for name in directories:
        _copy_from_storage(storage, f"{folder}/{name}", into / name)

"""Writing a dataset folder: one JSONL file per split (optionally gzip), `manifest.json` and a
dataset card `README.md` whose YAML header names the splits for `datasets.load_dataset`.

Rows stream from a builder straight into the split files; nothing holds the whole dataset. The
JSONL files depend only on the data and the choices (no timestamps, fixed key order, gzip with
no name or time), so the same choices on the same data give byte-identical files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from exports.builders.common import Row
from exports.choices import SCHEMA_VERSION, ExportChoices, ExportKind
from exports.splits import SplitCache

Progress = Callable[[int], None]
PROGRESS_EVERY = 5000
WRITE_BATCH = 256


@dataclass
class LengthBias:
    """How often the chosen reply is the longer (in characters), over unequal-length pairs."""

    chosen_longer: int = 0
    chosen_shorter: int = 0
    same_length: int = 0
    dropped_for_balance: int = 0

    @property
    def share(self) -> float | None:
        unequal = self.chosen_longer + self.chosen_shorter
        return round(self.chosen_longer / unequal, 4) if unequal else None

    def to_json(self, *, balanced: bool) -> dict[str, Any]:
        return {
            "chosen_longer": self.chosen_longer,
            "chosen_shorter": self.chosen_shorter,
            "same_length": self.same_length,
            "chosen_longer_share": self.share,
            "balanced": balanced,
            "dropped_for_balance": self.dropped_for_balance,
        }


@dataclass
class SplitFile:
    name: str
    file: str
    rows: int = 0
    sha256: str = ""
    bytes: int = 0


@dataclass
class WriteResult:
    splits: dict[str, SplitFile]
    rows_per_source: dict[str, int] = field(default_factory=dict)
    length_bias: LengthBias | None = None

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.splits.values())


def balance_for_length(rows: Callable[[], Iterator[Row]], bias: LengthBias) -> Iterator[Row]:
    """Rows with enough majority-side pairs dropped that the chosen reply is the longer one in
    half of the unequal-length pairs.

    A first pass counts both sides; the second keeps every minority-side and equal-length pair
    and an evenly spread, deterministic subset of the majority side (the i-th majority pair is
    kept when floor((i+1)·keep/total) steps up), exactly as many as the minority side has.
    """
    longer = shorter = 0
    for row in rows():
        longer += row.longer_chosen > 0
        shorter += row.longer_chosen < 0
    majority = 1 if longer > shorter else -1
    total, keep = max(longer, shorter), min(longer, shorter)
    seen = 0
    for row in rows():
        if row.longer_chosen == majority:
            kept = (seen + 1) * keep // total > seen * keep // total
            seen += 1
            if not kept:
                bias.dropped_for_balance += 1
                continue
        yield row


def write_rows(
    *,
    rows: Iterable[Row],
    out_dir: Path,
    kind: ExportKind,
    choices: ExportChoices,
    progress: Progress | None = None,
    length_bias: LengthBias | None = None,
) -> WriteResult:
    """Stream `rows` into one file per split of `choices`, under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ".jsonl.gz" if choices.gzip else ".jsonl"
    splits = {name: SplitFile(name, f"{name}{suffix}") for name in choices.splits}
    files = {name: _open(out_dir / s.file, compress=choices.gzip) for name, s in splits.items()}
    split_of = SplitCache(seed=choices.seed, validation=choices.validation, test=choices.test)
    per_source: dict[str, int] = {}
    count_sources = kind in (ExportKind.SFT, ExportKind.PROMPTS)
    # Lines wait in a list per split and go out a few hundred at a time: one write (and one
    # UTF-8 encoding) per batch instead of per line.
    pending: dict[str, list[str]] = {name: [] for name in splits}
    counts = dict.fromkeys(splits, 0)
    signs = [0, 0, 0]  # same length, chosen longer, chosen shorter (index -1)
    written = 0
    try:
        for row in rows:
            split = split_of[row.conversation_id]
            lines = pending[split]
            lines.append(row.line)
            if len(lines) >= WRITE_BATCH:
                lines.append("")
                files[split].write("\n".join(lines))
                lines.clear()
            counts[split] += 1
            if count_sources:
                per_source[row.source] = per_source.get(row.source, 0) + 1
            signs[row.longer_chosen] += 1
            written += 1
            if progress is not None and written % PROGRESS_EVERY == 0:
                progress(written)
        for split, lines in pending.items():
            if lines:
                lines.append("")
                files[split].write("\n".join(lines))
    finally:
        for handle in files.values():
            handle.close()
    for name, count in counts.items():
        splits[name].rows = count
    if length_bias is not None:
        length_bias.same_length += signs[0]
        length_bias.chosen_longer += signs[1]
        length_bias.chosen_shorter += signs[-1]
    for split in splits.values():
        path = out_dir / split.file
        split.sha256 = file_sha256(path)
        split.bytes = path.stat().st_size
    if progress is not None:
        progress(written)
    return WriteResult(
        splits=splits, rows_per_source=dict(sorted(per_source.items())), length_bias=length_bias
    )


def _open(path: Path, *, compress: bool) -> io.TextIOWrapper:
    raw = path.open("wb")
    if compress:
        # No file name and time 0 in the gzip header: the same rows give the same bytes.
        raw = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
        raw.close_fileobj = True  # type: ignore[attr-defined]
    return _TextFile(raw)


class _TextFile(io.TextIOWrapper):
    """UTF-8 text onto a binary file, closing a gzip stream's underlying file too."""

    def __init__(self, raw) -> None:
        super().__init__(raw, encoding="utf-8", newline="\n", write_through=False)
        self._raw = raw

    def close(self) -> None:
        fileobj = getattr(self._raw, "fileobj", None)
        super().close()
        if fileobj is not None and getattr(self._raw, "close_fileobj", False):
            fileobj.close()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def parley_version() -> str:
    try:
        return metadata.version("parley")
    except metadata.PackageNotFoundError:  # pragma: no cover - a source checkout not installed
        return "0+unknown"


def manifest_for(
    *,
    result: WriteResult,
    kind: ExportKind,
    choices: ExportChoices,
    project_slug: str,
    snapshot_id: int | None,
    rows_left_out: dict[str, int],
    created_by: str | None,
    created_at: str,
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "parley_version": parley_version(),
        "kind": kind.value,
        "project": project_slug,
        "snapshot_id": snapshot_id,
        "choices": choices.to_json(),
        "split_seed": choices.seed,
        "split_by": "conversation",
        "rows": result.rows,
        "splits": {
            name: {"file": s.file, "rows": s.rows, "sha256": s.sha256, "bytes": s.bytes}
            for name, s in result.splits.items()
        },
        "left_out": dict(sorted(rows_left_out.items())),
        "created_by": created_by,
        "created_at": created_at,
    }
    if kind in (ExportKind.SFT, ExportKind.PROMPTS):
        manifest["rows_per_source"] = result.rows_per_source
    if result.length_bias is not None:
        manifest["length_bias"] = result.length_bias.to_json(balanced=choices.length_balanced)
    return manifest


FORMAT_NOTES = {
    ExportKind.SFT: '`{"messages": [{"role", "content"}, ...], "meta": {...}}`: a human-written '
    "conversation ending in an assistant turn, for `trl.SFTTrainer`.",
    ExportKind.PREFERENCES: '`{"prompt": [...], "chosen": [...], "rejected": [...], "meta": '
    '{"group_id", "margin", ...}}`: one row per ordered pair of a ranking set, for '
    "`trl.RewardTrainer`. `group_id` is the ranking set (batch its pairs together); `margin` is "
    "the share of rankings ordering the pair this way minus the share ordering it the other way.",
    ExportKind.RANKINGS: '`{"prompt", "completions", "rankings": [{"annotator", "order", ...}], '
    '"consensus", "agreement", "kendall_tau", "meta"}`: one row per ranking set with every '
    "trainer's raw order; orders name completions by index, groups best first (a group is a tie).",
    ExportKind.PROMPTS: '`{"prompt": [{"role", "content"}, ...], "meta": {...}}`: the prompt pool '
    "for the PPO stage, deduplicated.",
}


def dataset_card(manifest: dict[str, Any]) -> str:
    """README.md with the YAML header `datasets` reads: one config, one data file per split."""
    kind = ExportKind(manifest["kind"])
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for name, split in manifest["splits"].items():
        lines += [f"  - split: {name}", f"    path: {split['file']}"]
    lines += ["---", ""]
    title = f"# {manifest['project']}: {kind.value} export"
    if manifest["snapshot_id"] is not None:
        title += f" #{manifest['snapshot_id']}"
    lines += [title, "", FORMAT_NOTES[kind], ""]
    lines += ["| split | rows | sha256 |", "|---|---|---|"]
    for name, split in manifest["splits"].items():
        lines.append(f"| {name} | {split['rows']} | `{split['sha256']}` |")
    lines += [
        "",
        "Splits are made by conversation (no conversation, and so no prompt, has rows in two "
        f"splits), deterministically from the seed {manifest['split_seed']}.",
        "",
        "Annotators appear only as pseudonyms (a keyed hash per project). The choices this "
        "export was made with, and what they left out, are in `manifest.json`.",
        "",
        "```python",
        "from datasets import load_dataset",
        'dataset = load_dataset("path/to/this/folder")',
        "```",
        "",
    ]
    return "\n".join(lines)


def write_manifest_and_card(out_dir: Path, manifest: dict[str, Any]) -> None:
    (out_dir / "manifest.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (out_dir / "README.md").write_text(dataset_card(manifest), encoding="utf-8")

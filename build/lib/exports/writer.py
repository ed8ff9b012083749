"""Writing a dataset folder: one JSONL file per split (optionally gzip), `manifest.json` and a
dataset card `README.md` whose YAML header names the splits for `datasets.load_dataset`.

Rows stream from a builder straight into the split files; nothing holds the whole dataset. The
JSONL files depend only on the data and the choices (no timestamps, fixed key order, gzip with
no name or time), so the same choices on the same data give byte-identical files.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import queue
import threading
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
        longer += row.longer
        shorter += row.shorter
    majority = "longer" if longer > shorter else "shorter"
    total, keep = max(longer, shorter), min(longer, shorter)
    seen = 0
    for row in rows():
        if getattr(row, majority):
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
    split_of = SplitCache(seed=choices.seed, validation=choices.validation, test=choices.test)
    per_source: dict[str, int] = {}
    count_sources = kind in (ExportKind.SFT, ExportKind.PROMPTS)
    # Lines wait in a list per split and go out a few hundred at a time, encoded once per
    # batch, to a thread that compresses, hashes and writes them (all three let go of the
    # interpreter lock) while this one builds the next rows.
    pending: dict[str, list[str]] = {name: [] for name in splits}
    counts = dict.fromkeys(splits, 0)
    longer = shorter = written = 0
    with _BackgroundWriter(
        {name: out_dir / split.file for name, split in splits.items()}, compress=choices.gzip
    ) as writer:
        for row in rows:
            split = split_of[row.conversation_id]
            lines = pending[split]
            lines.append(row.line)
            if len(lines) >= WRITE_BATCH:
                lines.append("")
                writer.put(split, "\n".join(lines).encode())
                lines.clear()
            count = row.count
            counts[split] += count
            if count_sources:
                per_source[row.source] = per_source.get(row.source, 0) + count
            longer += row.longer
            shorter += row.shorter
            before = written
            written += count
            if progress is not None and written // PROGRESS_EVERY != before // PROGRESS_EVERY:
                progress(written)
        for split, lines in pending.items():
            if lines:
                lines.append("")
                writer.put(split, "\n".join(lines).encode())
    for name, count in counts.items():
        splits[name].rows = count
        splits[name].sha256 = writer.sinks[name].sha256.hexdigest()
        splits[name].bytes = writer.sinks[name].size
    if length_bias is not None:
        length_bias.chosen_longer += longer
        length_bias.chosen_shorter += shorter
        length_bias.same_length += written - longer - shorter
    if progress is not None:
        progress(written)
    return WriteResult(
        splits=splits, rows_per_source=dict(sorted(per_source.items())), length_bias=length_bias
    )


class _HashingFile:
    """A file opened for writing that keeps the sha256 and size of every byte written to it."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("wb")
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class _BackgroundWriter:
    """Writes (split, bytes) items to their files in a thread of its own, in the order given.

    With `compress`, each file is a gzip stream with no name and time 0 in its header, so the
    same rows give the same bytes. An error in the thread is raised by the next `put` or at the
    end; leaving the block closes every file whatever happened.
    """

    def __init__(self, paths: dict[str, Path], *, compress: bool) -> None:
        self.sinks = {name: _HashingFile(path) for name, path in paths.items()}
        self.streams: dict[str, Any] = {
            name: gzip.GzipFile(filename="", mode="wb", fileobj=sink, mtime=0, compresslevel=6)
            if compress
            else sink
            for name, sink in self.sinks.items()
        }
        self.queue: queue.Queue = queue.Queue(maxsize=16)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="export-writer", daemon=True)

    def __enter__(self) -> _BackgroundWriter:
        self.thread.start()
        return self

    def _work(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.streams[item[0]].write(item[1])
                except BaseException as exc:  # raised in the producing thread
                    self.error = exc

    def put(self, split: str, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((split, data))

    def __exit__(self, *exc_info) -> None:
        self.queue.put(None)
        self.thread.join()
        try:
            for name, stream in self.streams.items():
                if stream is not self.sinks[name]:
                    stream.close()  # the gzip trailer; the sink stays open
        finally:
            for sink in self.sinks.values():
                sink.close()
        if self.error is not None and exc_info[0] is None:
            raise self.error


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


# The columns of each kind, declared in the dataset card. Without them `datasets` guesses each
# column's type from each block (~10 MB) of a file it reads, and fails on an export where a field
# is null or [] all through the first block and set later (a flag, a rewrite, a draft model):
# "Couldn't cast array of type string to null". Types: a dtype name, [item] for a list, and a
# dict for a struct. A builder that adds a field adds it here (tests check every row against it).
_S, _I, _F, _B = "string", "int64", "float64", "bool"
_MESSAGES = [{"role": _S, "content": _S}]
_SIDE = {"id": _I, "model": _S, "author": _S, "flags": [_S]}
# Who wrote a turn or a completion. Never a list of names: pyarrow's JSON reader (26.0) builds a
# broken column from a list whose first item is null ([null, "tiny-v1"]; apache/arrow#51305).
_AUTHOR = {"model": _S, "annotator": _S}
FEATURES: dict[ExportKind, dict[str, Any]] = {
    ExportKind.SFT: {
        "messages": _MESSAGES,
        "meta": {
            "message_id": _I, "conversation_id": _I, "source": _S, "lang": _S, "annotator": _S,
            "message_ids": [_I], "authors": [_AUTHOR], "draft_id": _I,
            "draft_model": _S, "edit_distance": _I,
            "labels": [{"name": _S, "value": _I, "annotator": _S}], "created_at": _S,
        },
    },
    ExportKind.PREFERENCES: {
        "prompt": _MESSAGES,
        "chosen": _MESSAGES,
        "rejected": _MESSAGES,
        "meta": {
            "group_id": _I, "margin": _F, "pair_source": _S, "annotator": _S,
            **{f"chosen_{key}": value for key, value in _SIDE.items()},
            **{f"rejected_{key}": value for key, value in _SIDE.items()},
            "context_id": _I, "conversation_id": _I, "rankings": _I, "agreement": _F,
            "all_bad": _I, "imported": _B, "state": _S, "completed_at": _S,
        },
    },
    ExportKind.RANKINGS: {
        "prompt": _MESSAGES,
        "completions": [_MESSAGES],
        "rankings": [
            {"annotator": _S, "imported": _B, "order": [[_I]], "all_bad": _B, "flags": [[_S]],
             "rewrite": _S, "time_spent_ms": _I}
        ],
        "consensus": [[_I]],
        "agreement": _F,
        "kendall_tau": _F,
        "meta": {
            "group_id": _I, "context_id": _I, "conversation_id": _I, "completion_ids": [_I],
            "completion_authors": [_AUTHOR], "state": _S,
            "created_at": _S, "completed_at": _S,
        },
    },
    ExportKind.PROMPTS: {
        "prompt": _MESSAGES,
        "meta": {
            "message_id": _I, "conversation_id": _I, "source": _S, "lang": _S, "tags": [_S],
            "created_at": _S,
        },
    },
}  # fmt: skip


def features_yaml(kind: ExportKind) -> list[str]:
    """The card's `dataset_info` header lines, in the YAML form `datasets.Features` writes."""
    return ["dataset_info:", "  features:", *_yaml_fields(FEATURES[kind], 2)]


def _yaml_fields(fields: dict[str, Any], indent: int) -> list[str]:
    lines = []
    for name, spec in fields.items():
        lines.append(f"{' ' * indent}- name: {name}")
        lines += _yaml_type(spec, indent + 2)
    return lines


def _yaml_type(spec: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(spec, str):
        return [f"{pad}dtype: {spec}"]
    if isinstance(spec, dict):
        return [f"{pad}struct:", *_yaml_fields(spec, indent)]
    (item,) = spec
    if isinstance(item, str):
        return [f"{pad}list: {item}"]
    if isinstance(item, dict):
        return [f"{pad}list:", *_yaml_fields(item, indent)]
    return [f"{pad}list:", *_yaml_type(item, indent + 2)]


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
    """README.md with the YAML header `datasets` reads: one config, one data file per split.

    `datasets.load_dataset` refuses a split whose file has no rows ("Instruction 'validation'
    corresponds to no data!"), so empty splits stay out of the header (the files and the
    manifest keep them); an export with no rows at all names its train file, which cannot load.
    """
    kind = ExportKind(manifest["kind"])
    splits = manifest["splits"]
    loadable = [name for name, split in splits.items() if split["rows"] > 0] or list(splits)[:1]
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for name in loadable:
        lines += [f"  - split: {name}", f"    path: {splits[name]['file']}"]
    lines += [*features_yaml(kind), "---", ""]
    title = f"# {manifest['project']}: {kind.value} export"
    if manifest["snapshot_id"] is not None:
        title += f" #{manifest['snapshot_id']}"
    lines += [title, "", FORMAT_NOTES[kind], ""]
    lines += ["| split | rows | sha256 |", "|---|---|---|"]
    for name, split in manifest["splits"].items():
        lines.append(f"| {name} | {split['rows']} | `{split['sha256']}` |")
    if empty := [name for name in splits if name not in loadable]:
        lines += [
            "",
            f"Empty, and so not loaded by `load_dataset`: {', '.join(empty)}.",
        ]
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

"""Prompt import throughput: the bulk importer against one create() per prompt.

    python benchmarks/import_prompts.py [--rows 100000] [--baseline-rows 2000]

Writes `--rows` prompts of our own (templated text, all different) to a temporary JSONL file and
imports it into a throwaway project with `prompt_file_import`, the path the import page and
`manage.py import_prompts` take: read, decode, check every line, drop duplicates, bulk insert in
one transaction. It then imports the same file again (every line a duplicate), and times the
naive baseline, `conversation_start` once per prompt (two INSERTs and a transaction each), on
`--baseline-rows` prompts, extrapolated to `--rows`.

Django runs with DEBUG off, as in production. The database is whatever DATABASE_URL names
(migrated first; the throwaway projects are deleted at the end), or, when it is not set, a
temporary SQLite file this script creates. The target is under 10 seconds for 100,000 prompts.
It prints figures; it does not assert them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 10.0

_TEMPLATES = (
    "How do I look after {count} {subject}s on a small budget?",
    "What should I check before buying {count} {subject}s for a school?",
    "Write a short poem about {count} {subject}s in the rain.",
    "Explain to a child why {count} {subject}s need different care.",
    "Give me a packing list for a trip with {count} {subject}s.",
    "Is it hard to clean {count} {subject}s at home in one afternoon?",
    "Plan a weekend workshop where {count} people each bring a {subject}.",
    "Compare two ways of storing {count} {subject}s over the winter.",
)
_SUBJECTS = (
    "sourdough starter",
    "balcony tomato plant",
    "second-hand road bike",
    "wool jumper",
    "cast iron pan",
    "paper kite",
    "old wooden chair",
    "camping stove",
    "garden pond",
    "violin string",
    "rusty padlock",
    "library book",
)
_TAGS = ("howto", "creative", "explain", "planning")


def benchmark_prompts(count: int) -> list[dict]:
    """`count` different prompts in the JSONL import format, the same every run."""
    rows = []
    per_count = len(_TEMPLATES) * len(_SUBJECTS)
    for index in range(count):
        template = _TEMPLATES[index % len(_TEMPLATES)]
        subject = _SUBJECTS[(index // len(_TEMPLATES)) % len(_SUBJECTS)]
        text = template.format(count=2 + index // per_count, subject=subject)
        rows.append({"prompt": text, "lang": "en", "tags": [_TAGS[index % len(_TAGS)]]})
    return rows


def setup_django(scratch: Path) -> str:
    """Use DATABASE_URL if set, else a new SQLite file under `scratch`; migrate; the vendor."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    os.environ.setdefault("PARLEY_VAR_DIR", str(scratch))
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{scratch / 'benchmark.sqlite3'}"
    os.environ["CELERY_BROKER_URL"] = "memory://"
    # As in production: with DEBUG on, Django logs every statement with its parameters quoted,
    # which for statements of thousands of rows costs more than the insert.
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("PARLEY_IMPORT_MAX_BYTES", str(1024**3))
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    import django
    from django.core.management import call_command
    from django.db import connection

    django.setup()
    call_command("migrate", verbosity=0)
    return f"{connection.vendor} {connection.settings_dict['NAME']}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, default=2_000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parley-bench-import-") as scratch:
        scratch_dir = Path(scratch)
        database = setup_django(scratch_dir)

        from annotations.models import Conversation, Project
        from annotations.services import conversation_start
        from labelling.importers import prompt_file_import

        rows = benchmark_prompts(args.rows)
        path = scratch_dir / "prompts.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
        size = path.stat().st_size
        print(f"database: {database}")
        print(f"file: {args.rows:,} prompts, {size / 1e6:.1f} MB of JSONL")

        stamp = int(time.time())
        project = Project.objects.create(slug=f"bench-import-{stamp}", name="Import benchmark")
        naive = Project.objects.create(slug=f"bench-naive-{stamp}", name="Naive benchmark")
        load_at_start = os.getloadavg()[0]
        try:
            started, cpu_started = time.perf_counter(), time.process_time()
            with path.open("rb") as source:
                report = prompt_file_import(project=project, source=source, filename=path.name)
            bulk_seconds = time.perf_counter() - started
            bulk_cpu = time.process_time() - cpu_started
            assert report.ok and report.imported == args.rows, report.summary()
            stored = Conversation.objects.filter(project=project, source="prompt").count()

            started = time.perf_counter()
            with path.open("rb") as source:
                again = prompt_file_import(project=project, source=source, filename=path.name)
            again_seconds = time.perf_counter() - started
            assert again.ok and again.duplicates == args.rows, again.summary()

            sample = rows[: args.baseline_rows]
            started = time.perf_counter()
            for row in sample:
                conversation_start(
                    project=naive,
                    text=row["prompt"],
                    source=Conversation.Source.PROMPT,
                    lang=row["lang"],
                    meta={"tags": row["tags"]},
                )
            naive_seconds = time.perf_counter() - started
        finally:
            project.delete()
            naive.delete()

        naive_rate = len(sample) / naive_seconds
        naive_total = args.rows / naive_rate
        print()
        print(f"{'mode':<34} {'rows':>9} {'seconds':>9} {'rows/s':>10}")
        print(f"{'bulk import (prompt_file_import)':<34} {args.rows:>9,} {bulk_seconds:>9.2f} "
              f"{args.rows / bulk_seconds:>10,.0f}")  # fmt: skip
        print(f"{'same file again (all duplicates)':<34} {args.rows:>9,} {again_seconds:>9.2f} "
              f"{args.rows / again_seconds:>10,.0f}")  # fmt: skip
        print(f"{'naive, one create() per prompt':<34} {len(sample):>9,} {naive_seconds:>9.2f} "
              f"{naive_rate:>10,.0f}")  # fmt: skip
        print()
        print(f"stored: {stored:,} pool prompts")
        print(f"bulk import used {bulk_cpu:.2f} s of CPU in this process (the rest: waiting "
              "for the database or for a CPU)")  # fmt: skip
        print(
            f"naive extrapolated to {args.rows:,} rows: {naive_total:.1f} s; "
            f"bulk is {naive_total / bulk_seconds:.1f}x faster"
        )
        verdict = "meets" if bulk_seconds < TARGET_SECONDS else "MISSES"
        print(f"target: {args.rows:,} prompts in under {TARGET_SECONDS:.0f} s: {verdict} it")
        cpus = os.cpu_count() or 1
        load_at_end = os.getloadavg()[0]
        print(f"load average: {load_at_start:.2f} at start, {load_at_end:.2f} at end, {cpus} CPUs")
        if max(load_at_start, load_at_end) > cpus:
            print("NOTE: other processes competed for the CPUs; rerun on an idle machine.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

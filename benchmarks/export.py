"""Export benchmark: a consensus `preferences` export of 200,000 ranking sets on PostgreSQL.

A project with 200,000 complete ranking sets of K = 4 candidates and three rankings each is
bulk-created in a database of its own (1.2 million preference rows). Then, on the same data:

1. a raw PostgreSQL `COPY (SELECT ...) TO STDOUT` of the same text columns (prompt, chosen and
   rejected text of every candidate pair): the floor, no Python per row;
2. Parley's exporter (`exports.services.export_write`, what the worker and the CLI run), in a
   process of its own so its peak memory (resident set, from the kernel) is its alone; and
   again on a tenth of the data, to show the peak does not grow with the size;
3. a straightforward ORM loop (a set at a time, its thread, candidates and rankings through
   model instances, `json.dumps` per row) on the first sets, its rate extrapolated.

It prints rows/s, the exporter's peak memory, and the ratios. Targets: >= 50,000 rows/s, peak
memory under 300 MB whatever the size, within 3x of the COPY.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python benchmarks/export.py

The database named by DATABASE_URL is only used to create and drop `parley_bench_export`;
`--reuse-db` keeps the seeded one between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
BENCH_DB = "parley_bench_export"
DAYS = 10  # sets are spread over ten days, so one day is a tenth of the data


def seed(*, sets: int, k: int, n: int, seed_value: int = 7) -> None:
    """Conversations, prompts, K model-written candidates each, complete sets with N rankings.

    Messages and sets are generated inside PostgreSQL (INSERT ... SELECT over generate_series);
    rankings are random orders made here (so the consensus and agreement are real) and copied
    in with COPY FROM.
    """
    import io

    from django.core.management import call_command
    from django.db import connection

    from annotations.models import ModelVersion, Project
    from benchmarks.seeding import (
        SetSeed,
        agreeing_orders,
        candidate_ids_by_set,
        copy_rankings,
        copy_set_figures,
        seed_members,
        seed_ranking_sets,
        set_figures_line,
    )

    call_command("migrate", verbosity=0)
    project = Project.objects.create(
        slug="bench", name="Bench", replies_per_set=k, rankings_per_set=n
    )
    model = ModelVersion.objects.create(name="bench-model", source="bench/model")
    author, members = seed_members(
        project, lead="author", trainers=(f"trainer{i}" for i in range(n))
    )
    trainers = [user.pk for user in members]
    with connection.cursor() as cursor:
        # Candidates of 60 to 1,300 characters, so pairs differ in length as real ones do.
        seed_ranking_sets(
            cursor,
            SetSeed(
                project_id=project.pk,
                author_id=author.pk,
                model_id=model.pk,
                sets=sets,
                k=k,
                n=n,
                prompt_text="'Question ' || m.id || ': how would you explain '"
                " || repeat('this idea, step by step, ', (2 + m.id %% 5)::int) || 'to a beginner?'",
                candidate_text="'Reply ' || g || ' to ' || m.id || '. ' || repeat("
                "'One more sentence of the answer. ', (1 + (m.id * 7 + g * 13) %% 31)::int)",
                spread_days=DAYS,
                complete=True,
            ),
        )
        candidates = candidate_ids_by_set(cursor, project.pk)
        rng = random.Random(seed_value)
        rankings = io.StringIO()
        figures = io.StringIO()
        for set_id, ids in candidates:
            # Trainers mostly agree: each ranking is a shared order with one random swap.
            orders = agreeing_orders(rng, ids, len(trainers))
            for user_id, order in zip(trainers, orders, strict=True):
                rankings.write(
                    f"{set_id}\t{user_id}\t{json.dumps(order)}\t{{}}\tf\t{rng.randint(5000, 90000)}"
                    "\tf\tnow\n"
                )
            figures.write(set_figures_line(set_id, orders, ids))
        copy_rankings(cursor, rankings)
        copy_set_figures(cursor, figures)
        cursor.execute("VACUUM (ANALYZE)")


def copy_baseline(out: Path | None) -> tuple[int, float, int]:
    """Rows, seconds and bytes of COPY TO STDOUT of every candidate pair's three texts, written
    to the file `out` as a client would (None: counted and thrown away)."""
    from django.db import connection

    class Sink:
        size = 0

        def __init__(self) -> None:
            self.file = out.open("wb") if out is not None else None

        def write(self, data: bytes | str) -> None:
            Sink.size += len(data)
            if self.file is not None:
                self.file.write(data if isinstance(data, bytes) else data.encode())

    query = """
        COPY (
            SELECT s.id, p.text, a.text, b.text
            FROM annotations_rankingset s
            JOIN annotations_message p ON p.id = s.context_id
            JOIN annotations_rankingcandidate ca ON ca.ranking_set_id = s.id
            JOIN annotations_rankingcandidate cb
              ON cb.ranking_set_id = s.id AND cb.position > ca.position
            JOIN annotations_message a ON a.id = ca.message_id
            JOIN annotations_message b ON b.id = cb.message_id
            WHERE s.state = 'complete'
        ) TO STDOUT
    """
    with connection.cursor() as cursor:
        sink = Sink()
        started = time.perf_counter()
        cursor.copy_expert(query, sink)
        if sink.file is not None:
            sink.file.close()
        seconds = time.perf_counter() - started
        cursor.execute(
            "SELECT coalesce(sum(k * (k - 1) / 2), 0) FROM (SELECT count(*) AS k FROM "
            "annotations_rankingcandidate GROUP BY ranking_set_id) c"
        )
        (rows,) = cursor.fetchone()
    return int(rows), seconds, Sink.size


def orm_loop(*, limit: int, out: Path) -> tuple[int, float]:
    """The obvious way: model instances a set at a time, json.dumps per row. (rows, seconds)"""
    from annotations.agreement import pairs_from_order
    from annotations.models import RankingSet
    from annotations.selectors import thread_to

    started = time.perf_counter()
    rows = 0
    with out.open("w", encoding="utf-8") as handle:
        sets = RankingSet.objects.filter(state="complete").select_related("context")
        for ranking_set in sets.order_by("id")[:limit].iterator():
            prompt = [{"role": m.role, "content": m.text} for m in thread_to(ranking_set.context)]
            texts = {
                e.message_id: e.message.text
                for e in ranking_set.entries.select_related("message").order_by("position")
            }
            orders = [r.order for r in ranking_set.rankings.filter(is_excluded=False)]
            for chosen, rejected in pairs_from_order(ranking_set.consensus):
                votes = sum(
                    (levels[chosen] < levels[rejected]) - (levels[chosen] > levels[rejected])
                    for levels in (
                        {c: i for i, g in enumerate(order) for c in g} for order in orders
                    )
                )
                row = {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": texts[chosen]}],
                    "rejected": [{"role": "assistant", "content": texts[rejected]}],
                    "meta": {"group_id": ranking_set.pk, "margin": votes / len(orders)},
                }
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                rows += 1
    return rows, time.perf_counter() - started


def run_exporter(db_url: str, out: Path, choices: dict) -> dict:
    """Parley's export in a child process; its figures and its peak resident memory."""
    env = dict(os.environ, DATABASE_URL=db_url)
    started = time.perf_counter()
    child = subprocess.Popen(  # noqa: S603 - this script, with arguments it made
        [sys.executable, __file__, "--child", str(out), "--choices", json.dumps(choices)],
        env=env,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    stdout = child.stdout.read()
    _, status, _ = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        sys.exit(f"the export process failed (status {status})")
    report = json.loads(stdout)
    report["wall"] = wall
    return report


def child(out: str, choices_json: str) -> None:
    """In the child: set Django up, export, print rows and seconds as JSON."""
    setup_started = time.perf_counter()
    from benchmarks.database import django_setup

    django_setup(os.environ["DATABASE_URL"])
    from annotations.models import Project
    from exports.services import export_choices_clean, export_write

    project = Project.objects.get(slug="bench")
    choices = export_choices_clean(
        project=project, kind="preferences", choices=json.loads(choices_json)
    )
    setup = time.perf_counter() - setup_started
    started = time.perf_counter()
    manifest = export_write(project=project, kind="preferences", choices=choices, out_dir=Path(out))
    seconds = time.perf_counter() - started
    size = sum(f.stat().st_size for f in Path(out).iterdir())
    # The kernel's high-water mark of this process's resident memory (rusage of a child also
    # counts what its parent held when it was forked, so the child reads its own).
    status = Path("/proc/self/status").read_text()
    peak_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
    print(
        json.dumps(
            {
                "rows": manifest["rows"],
                "seconds": seconds,
                "setup": setup,
                "bytes": size,
                "peak_mb": peak_kb / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", type=int, default=200_000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--orm-sets", type=int, default=5_000, help="sets the ORM loop exports")
    parser.add_argument("--reuse-db", action="store_true", help="keep and reuse the seeded data")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--choices", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.choices)
        return
    from benchmarks.database import drop_bench_database, kept_or_fresh_database

    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    db_url, seeded = kept_or_fresh_database(server, BENCH_DB, reuse=args.reuse_db, sets=args.sets)
    if not seeded:
        started = time.perf_counter()
        seed(sets=args.sets, k=args.k, n=args.n)
        print(f"seeded {args.sets:,} sets of K={args.k} with {args.n} rankings each "
              f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
    else:
        print("reusing the seeded database")
    from django.db import connection

    with tempfile.TemporaryDirectory(prefix="parley-bench-export-") as tmp:
        rows, sink_seconds, size = copy_baseline(None)
        print(f"COPY TO STDOUT:  {rows:,} rows in {sink_seconds:.2f} s "
              f"({rows / sink_seconds:,.0f} rows/s, {size / 1e6:,.0f} MB, discarded)")  # fmt: skip
        _, copy_seconds, _ = copy_baseline(Path(tmp) / "copy.tsv")
        print(f"  into a file:   {rows:,} rows in {copy_seconds:.2f} s "
              f"({rows / copy_seconds:,.0f} rows/s)")  # fmt: skip
        (Path(tmp) / "copy.tsv").unlink()
        connection.close()
        full = run_exporter(db_url, Path(tmp) / "full", {"validation": 0.05})
        print(f"Parley export:   {full['rows']:,} rows in {full['seconds']:.2f} s "
              f"({full['rows'] / full['seconds']:,.0f} rows/s, {full['bytes'] / 1e6:,.0f} MB "
              f"of JSONL), peak memory {full['peak_mb']:.0f} MB "
              f"(process start and Django set-up {full['setup']:.1f} s more)")  # fmt: skip
        day = _one_day()
        tenth = run_exporter(
            db_url, Path(tmp) / "tenth", {"validation": 0.05, "since": day, "until": day}
        )
        print(f"  a tenth:       {tenth['rows']:,} rows in {tenth['seconds']:.2f} s, "
              f"peak memory {tenth['peak_mb']:.0f} MB")  # fmt: skip
        orm_rows, orm_seconds = orm_loop(limit=args.orm_sets, out=Path(tmp) / "orm.jsonl")
        connection.close()
    orm_rate = orm_rows / orm_seconds
    rate = full["rows"] / full["seconds"]
    print(f"ORM loop:        {orm_rows:,} rows ({args.orm_sets:,} sets) in {orm_seconds:.2f} s "
          f"({orm_rate:,.0f} rows/s; the whole export would take "
          f"~{full['rows'] / orm_rate:,.0f} s)")  # fmt: skip
    print()
    print(f"rows/s: {rate:,.0f} (target >= 50,000): {'met' if rate >= 50_000 else 'MISSED'}")
    print(f"peak memory: {full['peak_mb']:.0f} MB full, {tenth['peak_mb']:.0f} MB a tenth "
          f"(target < 300 MB): {'met' if full['peak_mb'] < 300 else 'MISSED'}")  # fmt: skip
    ratio = full["seconds"] / copy_seconds
    print(f"time / COPY into a file: {ratio:.2f}x (target <= 3x): "
          f"{'met' if ratio <= 3 else 'MISSED'}; / COPY thrown away: "
          f"{full['seconds'] / sink_seconds:.2f}x")  # fmt: skip
    print(f"ORM loop time / Parley time (per row): {rate / orm_rate:.1f}x")
    if not args.reuse_db:
        drop_bench_database(server, BENCH_DB)


def _one_day() -> str:
    from annotations.models import RankingSet

    newest = RankingSet.objects.order_by("-created_at").values_list("created_at", flat=True)[0]
    return newest.date().isoformat()


if __name__ == "__main__":
    main()

"""Load benchmark of ranking assignment through the HTTP API on PostgreSQL.

A project with 200,000 ranking sets (K candidates, N rankings each, so N open slots per set) is
bulk-created in a database of its own; gunicorn serves the API; first one client (the baseline),
then 32 concurrent clients claim a ranking task and submit it, round after round. It prints
requests/s, p50 and p99 latency of claim and of submit, the ratio of the concurrent p99 to the
single-client p99, and counts double assignments (a task handed to two clients, or two slots
of one set to the same trainer) and lost submissions (a 200 on submit without its ranking
stored). Targets on a 2-core machine: 0 double assignments, 0 lost submissions, claim p99 <= 50 ms.

Each client pauses about a second (+-50%) between claiming a set and submitting it, as a very
quick trainer would; `--think-ms 0` drops the pause and measures how much the server can take
when every client fires its next request the moment the last one returns.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres python benchmarks/assignment.py

The database named by DATABASE_URL is only used to create and drop `parley_bench_assignment`.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "parley_bench_assignment"


def cpu_check_ms() -> float:
    """Milliseconds for a fixed loop of Python: how fast this machine is running right now.

    Shared machines vary (the same loop took 180 to 310 ms here within a minute), so the figure
    is printed before and after the phases to tell a slow machine from a slow change.
    """
    started = time.perf_counter()
    total = 0
    for i in range(3_000_000):
        total += i
    return (time.perf_counter() - started) * 1000


def cpu_ticks() -> list[int] | None:
    """The machine's CPU time so far (Linux /proc/stat: user ... steal), None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    return [int(value) for value in fields[1:9]]


def cpu_share(before: list[int] | None, after: list[int] | None) -> str:
    """Busy and stolen shares of all cores between two readings.

    Steal is time a virtual machine's cores were ready to run but the host ran something else:
    on a shared host it arrives in bursts, and every request caught in one waits it out.
    """
    if before is None or after is None:
        return "n/a"
    user, nice, system, idle, iowait, irq, softirq, steal = (
        b - a for a, b in zip(before, after, strict=True)
    )
    total = user + nice + system + idle + iowait + irq + softirq + steal or 1
    busy = user + nice + system + irq + softirq
    return f"busy {100 * busy / total:.0f}%, stolen by the host {100 * steal / total:.0f}%"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def prepare_database(server_url: str) -> str:
    """Create the benchmark database afresh on the server of `server_url`; return its URL."""
    import psycopg2

    parsed = urlparse(server_url)
    if parsed.scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit("benchmarks/assignment.py needs PostgreSQL: set DATABASE_URL=postgres://...")
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        cursor.execute(f"CREATE DATABASE {BENCH_DB}")
    admin.close()
    return parsed._replace(path=f"/{BENCH_DB}").geturl()


def drop_database(server_url: str) -> None:
    import psycopg2

    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
    admin.close()


def seed(*, sets: int, k: int, n: int, clients: int) -> dict:
    """Users with tokens, one project, `sets` ranking sets with K candidates and N open slots.

    Rows are generated inside PostgreSQL (INSERT ... SELECT over generate_series) so 200,000
    sets take seconds rather than minutes.
    """
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from annotations.models import Membership, ModelVersion, Project

    call_command("migrate", verbosity=0)
    project = Project.objects.create(
        slug="bench", name="Bench", replies_per_set=k, rankings_per_set=n, max_open_tasks=1
    )
    model = ModelVersion.objects.create(name="bench-model", source="bench/model")
    users = get_user_model()
    # Benchmark users authenticate with tokens only: no usable password.
    author = users.objects.create_user("author", password=None)
    Membership.objects.create(user=author, project=project, role="lead")
    tokens = []
    for i in range(clients):
        user = users.objects.create_user(f"trainer{i:02d}", password=None)
        Membership.objects.create(user=user, project=project, role="trainer")
        tokens.append(Token.objects.create(user=user).key)

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO annotations_conversation (project_id, source, external_id, meta, created_at)
            SELECT %s, 'import', 'bench-' || g, '{}', now() FROM generate_series(1, %s) AS g
            """,
            [project.pk, sets],
        )
        cursor.execute(
            """
            INSERT INTO annotations_message (conversation_id, role, text, lang, depth,
                author_user_id, is_synthetic, external_id, meta, created_at)
            SELECT c.id, 'user', 'Benchmark question number ' || c.id, 'en', 0, %s, false,
                '', '{}', now()
            FROM annotations_conversation c WHERE c.project_id = %s
            """,
            [author.pk, project.pk],
        )
        cursor.execute(
            """
            INSERT INTO annotations_message (conversation_id, parent_id, role, text, lang, depth,
                author_model_id, is_synthetic, external_id, meta, created_at)
            SELECT m.conversation_id, m.id, 'assistant',
                'Candidate ' || g || ' for question ' || m.id, 'en', 1, %s, true, '', '{}', now()
            FROM annotations_message m
            JOIN annotations_conversation c ON c.id = m.conversation_id
            CROSS JOIN generate_series(1, %s) AS g
            WHERE c.project_id = %s AND m.depth = 0
            """,
            [model.pk, k, project.pk],
        )
        cursor.execute(
            """
            INSERT INTO annotations_rankingset (project_id, context_id, rankings_needed,
                rankings_count, state, resamples, cancel_reason, created_at)
            SELECT %s, m.id, %s, 0, 'collecting', 0, '', now()
            FROM annotations_message m
            JOIN annotations_conversation c ON c.id = m.conversation_id
            WHERE c.project_id = %s AND m.depth = 0
            """,
            [project.pk, n, project.pk],
        )
        cursor.execute(
            """
            INSERT INTO annotations_rankingcandidate (ranking_set_id, message_id, position)
            SELECT s.id, m.id, row_number() OVER (PARTITION BY s.id ORDER BY m.id) - 1
            FROM annotations_rankingset s
            JOIN annotations_message m ON m.parent_id = s.context_id
            WHERE s.project_id = %s
            """,
            [project.pk],
        )
        cursor.execute(
            """
            INSERT INTO annotations_rankingset_authors (rankingset_id, user_id)
            SELECT s.id, %s FROM annotations_rankingset s WHERE s.project_id = %s
            """,
            [author.pk, project.pk],
        )
        cursor.execute(
            """
            INSERT INTO labelling_task (project_id, kind, state, priority, ranking_set_id,
                autosave, skip_reason, result, created_at)
            SELECT %s, 'ranking', 'open', 0, s.id, '{}', '', '{}', now()
            FROM annotations_rankingset s CROSS JOIN generate_series(1, %s)
            WHERE s.project_id = %s
            """,
            [project.pk, n, project.pk],
        )
        cursor.execute("SELECT count(*) FROM labelling_task WHERE project_id = %s", [project.pk])
        (task_count,) = cursor.fetchone()
    settle_after_bulk_load()
    return {
        "project": project.slug,
        "tokens": tokens,
        "seconds": time.perf_counter() - started,
        "tasks": task_count,
    }


def settle_after_bulk_load() -> None:
    """Do now what PostgreSQL would otherwise do during the timed phases after a bulk load.

    Autovacuum visits freshly filled tables and the next checkpoint writes out every page the
    load dirtied; either, landing mid-run, shows up in the latency tail as the aftermath of
    seeding rather than the cost of serving claims.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
        cursor.execute("CHECKPOINT")


def reuse(*, clients: int) -> dict:
    """The tokens and open slots of a database an earlier run kept (migrated to this code)."""
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from labelling.models import Task

    call_command("migrate", verbosity=0)
    tokens = list(
        Token.objects.filter(user__username__startswith="trainer")
        .order_by("user__username")
        .values_list("key", flat=True)[:clients]
    )
    if len(tokens) < clients:
        sys.exit(f"{BENCH_DB} has {len(tokens)} trainers; run once with --keep-db and no reuse")
    # Give back what an interrupted run left assigned, so every client starts empty-handed.
    Task.objects.filter(state="assigned").update(
        state="open", assignee=None, assigned_at=None, lease_expires_at=None
    )
    tasks = Task.objects.filter(project__slug="bench", state="open").count()
    return {"project": "bench", "tokens": tokens, "seconds": 0.0, "tasks": tasks}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict, *, port: int, workers: int, threads: int) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "gunicorn", "config.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "gthread",
        "--threads", str(threads), "--log-level", "warning", "--timeout", "60",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env)  # noqa: S603 (our own fixed command)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    sys.exit("gunicorn did not start")


@dataclass
class ClientResult:
    claims: list[float] = field(default_factory=list)
    submits: list[float] = field(default_factory=list)
    claimed: list[int] = field(default_factory=list)
    submitted_ok: list[int] = field(default_factory=list)
    empty: int = 0
    errors: list[str] = field(default_factory=list)


def run_client(*, port: int, token: str, slug: str, rounds: int, think: float) -> ClientResult:
    result = ClientResult()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def post(path: str, body: dict) -> tuple[int, dict | None, float]:
        started = time.perf_counter()
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        raw = response.read()
        elapsed = time.perf_counter() - started
        return response.status, (json.loads(raw) if raw else None), elapsed

    # Trainers do not act in lockstep: start at a random moment within one think time, and
    # vary each pause by +-50%, so the load is steady rather than 32 requests at once.
    rng = random.Random(token)
    if think:
        time.sleep(rng.uniform(0, think))
    for _ in range(rounds):
        status, task, elapsed = post(f"/api/v1/projects/{slug}/tasks/next", {"kind": "ranking"})
        result.claims.append(elapsed)
        if status == 204:
            result.empty += 1
            continue
        if status != 200:
            result.errors.append(f"claim {status}: {task}")
            continue
        result.claimed.append(task["id"])
        if think:
            time.sleep(rng.uniform(0.5 * think, 1.5 * think))
        order = [[candidate["id"]] for candidate in task["candidates"]]
        status, body, elapsed = post(
            f"/api/v1/tasks/{task['id']}/submit",
            {"order": order, "flags": {}, "all_bad": False, "rewrite": None, "time_spent_ms": 1},
        )
        result.submits.append(elapsed)
        if status == 200:
            result.submitted_ok.append(task["id"])
        else:
            result.errors.append(f"submit {status}: {body}")
    conn.close()
    return result


def run_clients(port: int, tokens: list[str], slug: str, rounds: int, think: float) -> list:
    """One thread per client token, in this process; their results in token order."""
    results: list[ClientResult] = [ClientResult() for _ in tokens]

    def work(i: int) -> None:
        results[i] = run_client(port=port, token=tokens[i], slug=slug, rounds=rounds, think=think)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(tokens))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def run_phase(
    *, port: int, tokens: list[str], slug: str, rounds: int, think: float, processes: int = 1
) -> dict:
    """The clients as threads spread over `processes` load-generating processes."""
    processes = max(1, min(processes, len(tokens)))
    groups = [tokens[i::processes] for i in range(processes)]
    started, ticks = time.perf_counter(), cpu_ticks()
    with multiprocessing.get_context("fork").Pool(len(groups)) as pool:
        per_group = pool.starmap(
            run_clients, [(port, group, slug, rounds, think) for group in groups]
        )
    seconds = time.perf_counter() - started
    cpu = cpu_share(ticks, cpu_ticks())
    results = [result for group in per_group for result in group]
    claims = [x for r in results for x in r.claims]
    submits = [x for r in results for x in r.submits]
    claimed = [t for r in results for t in r.claimed]
    return {
        "clients": len(tokens),
        "requests": len(claims) + len(submits),
        "seconds": seconds,
        "cpu": cpu,
        "claims": claims,
        "submits": submits,
        "claimed": claimed,
        "submitted_ok": [t for r in results for t in r.submitted_ok],
        "empty": sum(r.empty for r in results),
        "errors": [e for r in results for e in r.errors],
    }


def check_integrity(phases: list[dict]) -> dict:
    """Double assignments and lost submissions, from the clients' view and the database's."""
    from django.db.models import Count, Exists, OuterRef

    from annotations.models import Ranking, RankingSet
    from labelling.models import Task

    claimed = [t for phase in phases for t in phase["claimed"]]
    submitted = {t for phase in phases for t in phase["submitted_ok"]}
    handed_twice = len(claimed) - len(set(claimed))
    # Two rankings (or two held slots) of one set by the same trainer would also be a double.
    same_trainer_twice = (
        Task.objects.filter(kind="ranking", assignee__isnull=False)
        .values("ranking_set_id", "assignee_id")
        .annotate(c=Count("id"))
        .filter(c__gt=1)
        .count()
    )
    # A submission answered 200 is lost unless its task is done and its trainer's ranking of
    # that set is stored.
    stored = Ranking.objects.filter(
        ranking_set_id=OuterRef("ranking_set_id"), annotator_id=OuterRef("assignee_id")
    )
    kept = Task.objects.filter(pk__in=submitted, state="done").filter(Exists(stored)).count()
    count_mismatch = sum(
        1
        for s in RankingSet.objects.filter(rankings_count__gt=0).annotate(actual=Count("rankings"))
        if s.actual != s.rankings_count
    )
    return {
        "double_assignments": handed_twice + same_trainer_twice,
        "lost_submissions": len(submitted) - kept,
        "rankings_stored": kept,
        "submits_ok": len(submitted),
        "set_count_mismatches": count_mismatch,
    }


def report_line(name: str, phase: dict) -> str:
    rps = phase["requests"] / phase["seconds"] if phase["seconds"] else 0
    figures = [
        percentile(phase[kind], q) * 1000 for kind in ("claims", "submits") for q in (50, 99)
    ]
    latencies = " ".join(f"{value:>9.1f}" for value in figures)
    return f"{name:<10} {phase['clients']:>7} {phase['requests']:>8} {rps:>9.1f} {latencies}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=200_000)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--n", type=int, default=3, help="rankings needed per set")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=40, help="claim+submit rounds per client")
    parser.add_argument("--baseline-rounds", type=int, default=100)
    # One thread per process: on two cores, threads of one process queue for its interpreter
    # lock, which showed up as a longer tail than more single-threaded processes.
    parser.add_argument("--workers", type=int, default=6, help="gunicorn processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn process")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=1000.0,
        help="pause between claim and submit (a trainer reading the replies; 0: no pause)",
    )
    parser.add_argument(
        "--client-processes",
        type=int,
        default=1,
        help="processes the client threads are spread over (they share the server's cores)",
    )
    parser.add_argument("--keep-db", action="store_true", help="leave the database afterwards")
    parser.add_argument(
        "--reuse-db",
        action="store_true",
        help="run on the database a --keep-db run left (skips seeding; its sets are partly used)",
    )
    args = parser.parse_args()

    server_url = os.environ.get("DATABASE_URL", "")
    if not server_url:
        sys.exit(
            "Set DATABASE_URL to a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/postgres"
        )
    if args.reuse_db:
        bench_url = urlparse(server_url)._replace(path=f"/{BENCH_DB}").geturl()
    else:
        bench_url = prepare_database(server_url)
    env = dict(os.environ)
    env.update(
        DATABASE_URL=bench_url,
        DJANGO_SETTINGS_MODULE="config.settings.base",
        DEBUG="false",
        CELERY_BROKER_URL="memory://",
        CONN_MAX_AGE="600",
        STATIC_ROOT=str(ROOT / "static"),
    )
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()

    if args.reuse_db:
        seeded = reuse(clients=args.clients)
        print(f"reusing {BENCH_DB}: {seeded['tasks']:,} open ranking slots")
    else:
        print(f"seeding {args.sets:,} ranking sets (K={args.k}, N={args.n}) ...", flush=True)
        seeded = seed(sets=args.sets, k=args.k, n=args.n, clients=args.clients)
        print(f"seeded {seeded['tasks']:,} open ranking slots in {seeded['seconds']:.1f} s")
    from django.db import connections

    connections.close_all()
    # The clients share this process with Django: keep a full garbage collection over what is
    # loaded from stalling every client thread at once, which would show up as server latency.
    gc.collect()
    gc.freeze()

    cpu_before = cpu_check_ms()
    port = free_port()
    server = start_server(env, port=port, workers=args.workers, threads=args.threads)
    try:
        think = args.think_ms / 1000
        # Warm every server thread (imports, database connections) before timing anything.
        run_phase(port=port, tokens=seeded["tokens"][:16], slug="bench", rounds=4, think=0)
        baseline = run_phase(
            port=port, tokens=seeded["tokens"][:1], slug="bench", rounds=args.baseline_rounds,
            think=think,
        )  # fmt: skip
        loaded = run_phase(
            port=port, tokens=seeded["tokens"], slug="bench", rounds=args.rounds, think=think,
            processes=args.client_processes,
        )  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    cpu_after = cpu_check_ms()
    integrity = check_integrity([baseline, loaded])
    connections.close_all()
    print()
    print(
        f"gunicorn: {args.workers} processes x {args.threads} threads; "
        f"think time {args.think_ms:.0f} ms; CPU check {cpu_before:.0f} ms before, "
        f"{cpu_after:.0f} ms after (lower is faster)"
    )
    print(
        f"{'phase':<10} {'clients':>7} {'requests':>8} {'req/s':>9} {'claim p50':>9} "
        f"{'claim p99':>9} {'submit p50':>9} {'sub. p99':>9}   (latencies in ms)"
    )
    print(report_line("baseline", baseline))
    print(report_line("loaded", loaded))
    ratio = percentile(loaded["claims"], 99) / percentile(baseline["claims"], 99)
    print(f"claim p99 ratio loaded/baseline: {ratio:.2f}x")
    print(f"CPU during the phases: baseline {baseline['cpu']}; loaded {loaded['cpu']}")
    errors = baseline["errors"] + loaded["errors"]
    print(f"empty claims (204): {baseline['empty'] + loaded['empty']}; errors: {len(errors)}")
    for error in errors[:5]:
        print(f"  {error}")
    print(
        f"double assignments: {integrity['double_assignments']}; "
        f"lost submissions: {integrity['lost_submissions']} "
        f"(submits answered 200: {integrity['submits_ok']}, of them stored: "
        f"{integrity['rankings_stored']}, set counters out of step: "
        f"{integrity['set_count_mismatches']})"
    )
    claim_p99 = percentile(loaded["claims"], 99) * 1000
    targets = (
        integrity["double_assignments"] == 0
        and integrity["lost_submissions"] == 0
        and claim_p99 <= 50
    )
    print(
        f"targets (0 double, 0 lost, claim p99 <= 50 ms with {args.clients} clients): "
        f"{'MET' if targets else 'NOT MET'} (claim p99 {claim_p99:.1f} ms)"
    )
    if not (args.keep_db or args.reuse_db):
        drop_database(server_url)


if __name__ == "__main__":
    main()

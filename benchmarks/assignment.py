"""Load benchmark of ranking assignment through the HTTP API on PostgreSQL.

A project with 200,000 ranking sets (K candidates, N rankings each, so N open slots per set) is
bulk-created in a database of its own; gunicorn serves the API; first one client (the baseline),
then 32 concurrent clients claim a ranking task and submit it, round after round. It prints
requests/s, p50 and p99 latency of claim and of submit, the ratio of the concurrent p99 to the
single-client p99, and counts double assignments (a task handed to two clients, or two slots
of one set to the same trainer) and lost submissions (a 200 on submit without its ranking
stored). Targets on a 2-core machine: 0 double assignments, 0 lost submissions, claim p99 <= 50 ms.

Every answer that is not the expected success is counted by kind and included in "errors: N":
`5xx`, `503`, `4xx`, `connection dropped` (reset, refused, closed without an answer, or no answer
within 30 s), `non-JSON body`, `empty body`, `unexpected body`, `unexpected status`, and `client
crashed` for a bug in the client itself; a few are printed word for word. A 503 (the server's
answer while its database is unavailable) and a dropped connection are tried again after a pause
(the 503's Retry-After, at most 2 s; else 0.5 s), up to 6 tries; claims and submits are
idempotent on the server, so this is safe. Other bad answers are not retried: the client goes on
to its next round, whose claim hands back the task it still holds. Latencies are per claim or
submit, from its first try to its final answer. The summary also says how many requests were
retried, how many of those succeeded in the end, and how many got no success at all.

A submit is acknowledged when any of its tries got a 200; a submit whose every try failed is not,
and is not counted as lost. A trainer getting back a task it holds is not a double assignment;
getting one back after its submit was acknowledged is. After the run the database is also
checked for rankings stored twice (one set, one trainer) and for tasks still "assigned" whose
lease has passed.

`--restart-postgres-after SECONDS` restarts PostgreSQL once, that long into the loaded phase
(`pg_ctlcluster --skip-systemctl-redirect <version> main restart -m fast`, so it needs the
Debian/Ubuntu packaging, one version in /etc/postgresql, and the rights to run it), and prints
when it restarted and how long the restart took. The checks above must hold all the same. Do not
use it on a PostgreSQL server whose other users would mind.

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
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
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


def seed(*, sets: int, k: int, n: int, clients: int) -> dict:
    """Users with tokens, one project, `sets` ranking sets with K candidates and N open slots.

    Rows are generated inside PostgreSQL (INSERT ... SELECT over generate_series) so 200,000
    sets take seconds rather than minutes.
    """
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from annotations.models import ModelVersion, Project
    from benchmarks.seeding import SetSeed, seed_members, seed_ranking_sets

    call_command("migrate", verbosity=0)
    project = Project.objects.create(
        slug="bench", name="Bench", replies_per_set=k, rankings_per_set=n, max_open_tasks=1
    )
    model = ModelVersion.objects.create(name="bench-model", source="bench/model")
    # Benchmark users authenticate with tokens only: no usable password.
    author, trainers = seed_members(
        project, lead="author", trainers=(f"trainer{i:02d}" for i in range(clients))
    )
    tokens = [Token.objects.create(user=user).key for user in trainers]

    started = time.perf_counter()
    with connection.cursor() as cursor:
        seed_ranking_sets(
            cursor,
            SetSeed(
                project_id=project.pk,
                author_id=author.pk,
                model_id=model.pk,
                sets=sets,
                k=k,
                n=n,
                prompt_text="'Benchmark question number ' || m.id",
                candidate_text="'Candidate ' || g || ' for question ' || m.id",
            ),
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
                autosave, pages_opened, autosave_page, autosave_seq, autosave_revision,
                skip_reason, result, created_at)
            SELECT %s, 'ranking', 'open', 0, s.id, '{}', 0, 0, 0, 0, '', '{}', now()
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


# A claim or a submit answered 503, or whose connection dropped, is tried again up to this many
# times in all. Both are safe to repeat: claiming again returns the task one holds, and
# submitting a task again returns it unchanged.
TRIES = 6
RETRY_PAUSE_S = 0.5  # before trying again after a dropped connection, or a 503 without Retry-After
RETRY_PAUSE_CAP_S = 2.0  # the longest Retry-After waited for
HTTP_TIMEOUT_S = 30  # a request still unanswered after this counts as a dropped connection
EXAMPLES_PER_CLIENT = 3  # bad answers each client keeps word for word, for the summary


@dataclass
class ClientResult:
    """What one client saw: latencies, its claims and acknowledged submits, what went wrong."""

    trainer: str
    claims: list[float] = field(default_factory=list)
    submits: list[float] = field(default_factory=list)
    # ("claimed" | "acknowledged", task id) in the order they happened, for the double check.
    history: list[tuple[str, int]] = field(default_factory=list)
    empty: int = 0
    # Every answer that was not the expected success, by kind, retried ones included.
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    retried: int = 0  # claims and submits tried more than once
    recovered: int = 0  # of them, those that got their success in the end
    unanswered: Counter[str] = field(default_factory=Counter)  # "claim"/"submit" with no success

    def fail(self, kind: str, example: str) -> None:
        self.failures[kind] += 1
        if len(self.examples) < EXAMPLES_PER_CLIENT:
            self.examples.append(example)


def retry_pause(retry_after: str | None) -> float:
    """Seconds to wait before trying again, as a 503's Retry-After asks (capped)."""
    try:
        seconds = float(retry_after) if retry_after else RETRY_PAUSE_S
    except ValueError:  # an HTTP date: no server of ours sends one
        seconds = RETRY_PAUSE_S
    return min(max(seconds, 0.0), RETRY_PAUSE_CAP_S)


class ApiClient:
    """One trainer's keep-alive connection to the API; counts every bad answer in `result`."""

    def __init__(self, *, port: int, token: str, result: ClientResult) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.result = result

    def post(
        self, what: str, path: str, payload: dict, *, expected: tuple[int, ...]
    ) -> tuple[int, dict | None] | None:
        """The status and JSON body of an `expected` answer, None if no try got one.

        A 503 or a dropped connection is tried again, up to TRIES times; any other bad answer
        (a 500, a 4xx, a body that is not JSON) is final.
        """
        for attempt in range(1, TRIES + 1):
            answer, pause = self.try_once(what, path, payload, expected=expected)
            if answer is not None:
                if attempt > 1:
                    self.result.recovered += 1
                return answer
            if pause is None or attempt == TRIES:
                break
            if attempt == 1:
                self.result.retried += 1
            time.sleep(pause)
        self.result.unanswered[what] += 1
        return None

    def try_once(
        self, what: str, path: str, payload: dict, *, expected: tuple[int, ...]
    ) -> tuple[tuple[int, dict | None] | None, float | None]:
        """One request: (status, body) if it is expected, else None and the pause before trying
        again (None: not worth trying again)."""
        try:
            self.conn.request("POST", path, body=json.dumps(payload), headers=self.headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            # Reset, refused, timed out or closed without an answer (RemoteDisconnected): the
            # request may or may not have been carried out. Ask again on a fresh connection.
            self.conn.close()
            self.result.fail("connection dropped", f"{what}: {type(exc).__name__}: {exc}")
            return None, RETRY_PAUSE_S
        status = response.status
        example = f"{what} {status}: {raw[:120]!r}"
        if status == 503:
            self.result.fail("503", example)
            return None, retry_pause(response.getheader("Retry-After"))
        if status not in expected:
            kind = {4: "4xx", 5: "5xx"}.get(status // 100, "unexpected status")
            self.result.fail(kind, example)
            return None, None
        if status == 204:
            return (status, None), None
        if not raw:
            return self.unusable("empty body", example)
        try:
            body = json.loads(raw)
        except ValueError:
            return self.unusable("non-JSON body", example)
        if not isinstance(body, dict):
            return self.unusable("unexpected body", example)
        return (status, body), None

    def unusable(self, kind: str, example: str) -> tuple[None, None]:
        self.result.fail(kind, example)
        return None, None

    def close(self) -> None:
        self.conn.close()


def ranking_order(task: dict | None) -> list[list[int]] | None:
    """Each candidate of a claimed ranking task in a group of its own; None if it is not one."""
    if not task or not isinstance(task.get("id"), int):
        return None
    candidates = task.get("candidates")
    if not isinstance(candidates, list):
        return None
    if not all(isinstance(c, dict) and isinstance(c.get("id"), int) for c in candidates):
        return None
    return [[candidate["id"]] for candidate in candidates]


def run_client(
    *, port: int, token: str, slug: str, rounds: int, think: float, result: ClientResult
) -> None:
    """Claim and submit `rounds` times, into `result`; a bad answer is counted, never fatal.

    A claim or a submit that got no success leaves the task with this trainer, and its next
    claim hands it back, so the work goes on as a real trainer's would after an error page.
    """
    client = ApiClient(port=port, token=token, result=result)
    # Trainers do not act in lockstep: start at a random moment within one think time, and
    # vary each pause by +-50%, so the load is steady rather than 32 requests at once.
    rng = random.Random(token)
    if think:
        time.sleep(rng.uniform(0, think))
    for _ in range(rounds):
        started = time.perf_counter()
        answer = client.post(
            "claim", f"/api/v1/projects/{slug}/tasks/next", {"kind": "ranking"},
            expected=(200, 204),
        )  # fmt: skip
        result.claims.append(time.perf_counter() - started)
        if answer is None:
            continue
        status, task = answer
        if status == 204:
            result.empty += 1
            continue
        order = ranking_order(task)
        if order is None:
            result.fail("unexpected body", f"claim 200: {str(task)[:120]}")
            continue
        result.history.append(("claimed", task["id"]))
        if think:
            time.sleep(rng.uniform(0.5 * think, 1.5 * think))
        started = time.perf_counter()
        answer = client.post(
            "submit", f"/api/v1/tasks/{task['id']}/submit",
            {"order": order, "flags": {}, "all_bad": False, "rewrite": None, "time_spent_ms": 1},
            expected=(200,),
        )  # fmt: skip
        result.submits.append(time.perf_counter() - started)
        if answer is not None:
            result.history.append(("acknowledged", task["id"]))
    client.close()


def run_clients(port: int, tokens: list[str], slug: str, rounds: int, think: float) -> list:
    """One thread per client token, in this process; their results in token order."""
    results = [ClientResult(trainer=token) for token in tokens]

    def work(i: int) -> None:
        try:
            run_client(
                port=port, token=tokens[i], slug=slug, rounds=rounds, think=think,
                result=results[i],
            )  # fmt: skip
        except Exception as exc:  # a bug in the client must show in the summary, not vanish
            results[i].fail("client crashed", f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(tokens))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def postgres_restart_command() -> list[str]:
    """pg_ctlcluster's fast restart of this machine's one PostgreSQL cluster (Debian layout)."""
    pg_ctlcluster = shutil.which("pg_ctlcluster")
    if pg_ctlcluster is None:
        sys.exit(
            "--restart-postgres-after needs pg_ctlcluster (Debian/Ubuntu PostgreSQL packages), "
            "which is not on this machine's PATH"
        )
    config = Path("/etc/postgresql")
    versions = sorted(p.name for p in config.iterdir() if p.is_dir()) if config.is_dir() else []
    if len(versions) != 1:
        sys.exit(
            f"--restart-postgres-after needs exactly one PostgreSQL version in {config}, "
            f"found {versions or 'none'}"
        )
    cluster = [pg_ctlcluster, "--skip-systemctl-redirect", versions[0], "main"]
    return [*cluster, "restart", "-m", "fast"]


class PostgresRestart:
    """Restarts PostgreSQL once, `after` seconds into a phase, from a thread of this process."""

    def __init__(self, command: list[str], *, after: float) -> None:
        self.command = command
        self.after = after
        self.phase_ended = threading.Event()
        self.outcome = "not restarted: the phase ended first"
        self.thread: threading.Thread | None = None
        self.phase_started = 0.0

    def start(self) -> None:
        self.phase_started = time.perf_counter()
        self.thread = threading.Thread(target=self.restart, daemon=True)
        self.thread.start()

    def restart(self) -> None:
        if self.phase_ended.wait(self.after):
            return
        clock, started = datetime.now().strftime("%H:%M:%S.%f")[:-3], time.perf_counter()
        at = f"at {clock}, {started - self.phase_started:.1f} s into the phase"
        done = subprocess.run(self.command, capture_output=True, text=True)  # noqa: S603 (fixed)
        took = time.perf_counter() - started
        if done.returncode == 0:
            self.outcome = f"restarted {at}; the restart took {took:.1f} s"
        else:
            self.outcome = f"restart FAILED {at} (exit {done.returncode}): {done.stderr.strip()}"
            # Others share this server: never leave it down.
            start = [*self.command[:-3], "start"]
            subprocess.run(start, capture_output=True)  # noqa: S603 (our own fixed command)
        print(f"PostgreSQL {self.outcome}", flush=True)

    def stop(self) -> None:
        """End of the phase: cancel a restart not yet begun, or wait for the running one."""
        self.phase_ended.set()
        if self.thread is not None:
            self.thread.join()


def run_phase(
    *,
    port: int,
    tokens: list[str],
    slug: str,
    rounds: int,
    think: float,
    processes: int = 1,
    restart: PostgresRestart | None = None,
) -> dict:
    """The clients as threads spread over `processes` load-generating processes."""
    processes = max(1, min(processes, len(tokens)))
    groups = [tokens[i::processes] for i in range(processes)]
    started, ticks = time.perf_counter(), cpu_ticks()
    with multiprocessing.get_context("fork").Pool(len(groups)) as pool:
        # Started once the clients' processes are forked, so that none inherits its thread.
        if restart is not None:
            restart.start()
        try:
            per_group = pool.starmap(
                run_clients, [(port, group, slug, rounds, think) for group in groups]
            )
        finally:
            if restart is not None:
                restart.stop()
    seconds = time.perf_counter() - started
    cpu = cpu_share(ticks, cpu_ticks())
    results = [result for group in per_group for result in group]
    claims = [x for r in results for x in r.claims]
    submits = [x for r in results for x in r.submits]
    return {
        "clients": len(tokens),
        "requests": len(claims) + len(submits),
        "seconds": seconds,
        "cpu": cpu,
        "claims": claims,
        "submits": submits,
        "histories": [(r.trainer, r.history) for r in results],
        "empty": sum(r.empty for r in results),
        "failures": sum((r.failures for r in results), Counter()),
        "examples": [e for r in results for e in r.examples],
        "retried": sum(r.retried for r in results),
        "recovered": sum(r.recovered for r in results),
        "unanswered": sum((r.unanswered for r in results), Counter()),
    }


def doubles_seen_by_clients(phases: list[dict]) -> int:
    """Tasks handed to two trainers, or handed again to one after its submit was acknowledged.

    Getting a task back is otherwise fine: claiming again returns the task one holds, which is
    what follows a claim or a submit that got no success.
    """
    histories: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for phase in phases:
        for trainer, history in phase["histories"]:
            histories[trainer].extend(history)
    holders: dict[int, set[str]] = defaultdict(set)
    doubles = set()
    for trainer, history in histories.items():
        acknowledged = set()
        for event, task in history:
            if event == "acknowledged":
                acknowledged.add(task)
                continue
            holders[task].add(trainer)
            if task in acknowledged:
                doubles.add(task)
    doubles.update(task for task, trainers in holders.items() if len(trainers) > 1)
    return len(doubles)


def check_integrity(phases: list[dict]) -> dict:
    """Double assignments, lost or doubled submissions and stale leases, from the clients' view
    and the database's."""
    from django.db.models import Count, Exists, OuterRef
    from django.utils import timezone

    from annotations.models import Ranking, RankingSet
    from labelling.models import Task

    acknowledged = {
        task
        for phase in phases
        for _, history in phase["histories"]
        for event, task in history
        if event == "acknowledged"
    }
    # Two rankings (or two held slots) of one set by the same trainer would also be a double.
    same_trainer_twice = (
        Task.objects.filter(kind="ranking", assignee__isnull=False)
        .values("ranking_set_id", "assignee_id")
        .annotate(c=Count("id"))
        .filter(c__gt=1)
        .count()
    )
    # A submission answered 200 (on any try) is lost unless its task is done and its trainer's
    # ranking of that set is stored. One whose every try failed was never acknowledged.
    stored = Ranking.objects.filter(
        ranking_set_id=OuterRef("ranking_set_id"), annotator_id=OuterRef("assignee_id")
    )
    kept = Task.objects.filter(pk__in=acknowledged, state="done").filter(Exists(stored)).count()
    # A retried submit must not store a second ranking (the database's constraint should see
    # to that; this checks it is there).
    stored_twice = (
        Ranking.objects.filter(annotator__isnull=False)
        .values("ranking_set_id", "annotator_id")
        .annotate(c=Count("id"))
        .filter(c__gt=1)
        .count()
    )
    assigned = Task.objects.filter(state="assigned")
    count_mismatch = sum(
        1
        for s in RankingSet.objects.filter(rankings_count__gt=0).annotate(actual=Count("rankings"))
        if s.actual != s.rankings_count
    )
    return {
        "double_assignments": doubles_seen_by_clients(phases) + same_trainer_twice,
        "lost_submissions": len(acknowledged) - kept,
        "rankings_stored": kept,
        "submits_ok": len(acknowledged),
        "stored_twice": stored_twice,
        "stale_leases": assigned.filter(lease_expires_at__lt=timezone.now()).count(),
        "still_held": assigned.count(),
        "set_count_mismatches": count_mismatch,
    }


def error_summary(phases: list[dict]) -> list[str]:
    """Lines counting every answer that was not the expected success, by kind."""
    failures = sum((phase["failures"] for phase in phases), Counter())
    unanswered = sum((phase["unanswered"] for phase in phases), Counter())
    kinds = ", ".join(f"{kind}: {count}" for kind, count in failures.most_common())
    lines = [
        f"empty claims (204): {sum(phase['empty'] for phase in phases)}; "
        f"errors: {failures.total()}" + (f" ({kinds})" if kinds else ""),
        f"requests retried: {sum(phase['retried'] for phase in phases)}, of them answered in the "
        f"end: {sum(phase['recovered'] for phase in phases)}; with no success: "
        f"{unanswered['claim']} claims, {unanswered['submit']} submits",
    ]
    examples = dict.fromkeys(example for phase in phases for example in phase["examples"])
    lines += [f"  {example}" for example in list(examples)[:5]]
    return lines


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
    parser.add_argument(
        "--restart-postgres-after",
        type=float,
        metavar="SECONDS",
        help="restart PostgreSQL (pg_ctlcluster, fast mode) once, this long into the loaded phase",
    )
    args = parser.parse_args()
    restart = None
    if args.restart_postgres_after is not None:
        restart = PostgresRestart(postgres_restart_command(), after=args.restart_postgres_after)

    server_url = os.environ.get("DATABASE_URL", "")
    if not server_url:
        sys.exit(
            "Set DATABASE_URL to a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/postgres"
        )
    from benchmarks.database import bench_database, drop_bench_database

    bench_url, _ = bench_database(server_url, BENCH_DB, reuse=args.reuse_db)
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
            processes=args.client_processes, restart=restart,
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
    if restart is not None:
        print(f"PostgreSQL during the loaded phase: {restart.outcome}")
    print("\n".join(error_summary([baseline, loaded])))
    print(
        f"double assignments: {integrity['double_assignments']}; "
        f"lost submissions: {integrity['lost_submissions']} "
        f"(submits answered 200: {integrity['submits_ok']}, of them stored: "
        f"{integrity['rankings_stored']}, set counters out of step: "
        f"{integrity['set_count_mismatches']})"
    )
    print(
        f"rankings stored twice (one set, one trainer): {integrity['stored_twice']}; "
        f"tasks still assigned past their lease: {integrity['stale_leases']} "
        f"(assigned in all: {integrity['still_held']})"
    )
    claim_p99 = percentile(loaded["claims"], 99) * 1000
    targets = (
        integrity["double_assignments"] == 0
        and integrity["lost_submissions"] == 0
        and integrity["stored_twice"] == 0
        and integrity["stale_leases"] == 0
        and claim_p99 <= 50
    )
    print(
        f"targets (0 double, 0 lost, 0 stored twice, 0 stale leases, claim p99 <= 50 ms with "
        f"{args.clients} clients): "
        f"{'MET' if targets else 'NOT MET'} (claim p99 {claim_p99:.1f} ms)"
    )
    if not (args.keep_db or args.reuse_db):
        drop_bench_database(server_url, BENCH_DB)


if __name__ == "__main__":
    main()

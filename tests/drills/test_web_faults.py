"""Fault drills on the web tier: gunicorn workers killed mid-request, PostgreSQL restarted
under claims and submits. Afterwards no acknowledged submission is lost, none is stored twice,
no task is left assigned, and every client got an answer or a retry (never a 500)."""

import os
import random
import signal
import threading
import time

import psycopg2
import pytest
from django.db import connection

from annotations.models import Ranking, RankingSet
from labelling.models import Task
from tests.conftest import wait_for
from tests.factories import make_ranking_set, trainers

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="the drills hold row locks and restart the server: PostgreSQL only",
    ),
]


def _database_dsn() -> dict:
    settings = connection.settings_dict
    return {
        "dbname": settings["NAME"],
        "user": settings["USER"],
        "host": settings["HOST"],
        "port": settings["PORT"] or 5432,
        "password": settings["PASSWORD"],
    }


class RowHold:
    """Lock one task row from outside the site, so a submit stops inside its transaction."""

    def __init__(self, task_id: int):
        self.connection = psycopg2.connect(**_database_dsn())
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {Task._meta.db_table} WHERE id = %s FOR UPDATE",  # noqa: S608
                [task_id],
            )

    def someone_waits(self) -> bool:
        with psycopg2.connect(**_database_dsn()) as probe, probe.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return cursor.fetchone()[0] > 0

    def release(self) -> None:
        try:
            self.connection.rollback()
            self.connection.close()
        except psycopg2.Error:
            pass  # the drill restarted the server under it


def _submit_in_background(client, task_id: int, order) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run():
        try:
            outcome["answer"] = client.once("POST", f"/api/v1/tasks/{task_id}/submit", order)
        except Exception as exc:  # noqa: BLE001 - the drill wants to see what the client met
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _claim(client, slug: str):
    return client.call("POST", f"/api/v1/projects/{slug}/tasks/next", {"kind": "ranking"})


def _order(task: dict) -> dict:
    return {"order": [[candidate["id"]] for candidate in task["candidates"]]}


def test_a_worker_killed_mid_submit_loses_nothing_and_the_retry_stores_it_once(
    gunicorn, retrying_client, project
):
    (trainer,) = trainers(project, 1)
    ranking_set = make_ranking_set(project, needed=1)
    client = retrying_client(trainer)
    task = _claim(client, project.slug).body
    hold = RowHold(task["id"])
    thread, outcome = _submit_in_background(client, task["id"], _order(task))
    try:
        wait_for(hold.someone_waits, timeout=20, message="the submit never reached the database")
        for pid in gunicorn.workers():  # the one serving the submit among them
            os.kill(pid, signal.SIGKILL)
        thread.join(timeout=20)
    finally:
        hold.release()
    assert not thread.is_alive(), "the client hung on a killed worker"
    assert "error" in outcome, f"the submit was answered although its worker died: {outcome}"
    assert not Ranking.objects.filter(ranking_set=ranking_set).exists()  # rolled back

    gunicorn.wait_for_workers(2)
    answer = client.call("POST", f"/api/v1/tasks/{task['id']}/submit", _order(task))
    assert answer.status == 200 and answer.body["state"] == "done", answer
    again = client.call("POST", f"/api/v1/tasks/{task['id']}/submit", _order(task))
    assert again.status == 200  # a client unsure whether it got through may send it again
    assert Ranking.objects.filter(ranking_set=ranking_set, annotator=trainer).count() == 1
    assert RankingSet.objects.get(pk=ranking_set.pk).state == RankingSet.State.COMPLETE


def _work_through_the_queue(client, slug: str, acknowledged: list, stop: threading.Event):
    """Claim and submit until the queue is empty, as a trainer's page would."""
    while not stop.is_set():
        claimed = _claim(client, slug)
        if claimed.status == 204:
            return
        assert claimed.status == 200, claimed
        task = claimed.body
        answer = client.call("POST", f"/api/v1/tasks/{task['id']}/submit", _order(task))
        assert answer.status == 200, answer
        acknowledged.append((task["ranking_set"], task["id"]))


def _run_clients(clients, slug: str, disturb) -> list:
    acknowledged: list = []
    stop = threading.Event()
    errors: list = []

    def run(client):
        try:
            _work_through_the_queue(client, slug, acknowledged, stop)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    disturb(lambda: any(t.is_alive() for t in threads))
    for thread in threads:
        thread.join(timeout=120)
    stop.set()
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not errors, errors
    return acknowledged


def _assert_nothing_lost_or_doubled(project, acknowledged, clients):
    assert not [c.not_json for c in clients if c.not_json], "a client got a body that is not JSON"
    assert not any(c.met["500"] for c in clients), [dict(c.met) for c in clients]
    stored = set(
        Ranking.objects.filter(ranking_set__project=project).values_list("ranking_set", "annotator")
    )
    rankings = Ranking.objects.filter(ranking_set__project=project).count()
    assert rankings == len(stored)  # none stored twice
    done = set(
        Task.objects.filter(project=project, state=Task.State.DONE).values_list("ranking_set", "pk")
    )
    assert set(acknowledged) <= done and len(acknowledged) == len(done) == rankings
    assert not Task.objects.filter(project=project, state=Task.State.ASSIGNED).exists()
    assert not Task.objects.filter(project=project, state=Task.State.OPEN).exists()


def test_workers_killed_at_random_under_load(gunicorn, retrying_client, project):
    project.rankings_per_set = 2
    project.save()
    people = trainers(project, 4)
    for _ in range(100):
        make_ranking_set(project, k=3, needed=2)
    clients = [retrying_client(person) for person in people]
    kills = []

    def kill_workers_while(running):
        rng = random.Random(7)
        while running():
            time.sleep(0.5)
            workers = gunicorn.workers()
            if running() and workers:
                os.kill(rng.choice(workers), signal.SIGKILL)
                kills.append(time.monotonic())

    acknowledged = _run_clients(clients, project.slug, kill_workers_while)
    dropped = sum(n for c in clients for kind, n in c.met.items() if kind.startswith("dropped"))
    print(f"\n{len(kills)} workers killed, {dropped} requests dropped and retried")
    assert len(kills) >= 3 and dropped, "the drill never cut a request"
    _assert_nothing_lost_or_doubled(project, acknowledged, clients)
    assert len(acknowledged) == 200


def test_a_postgres_restart_during_claims_and_submits(
    gunicorn, retrying_client, project, postgres_cluster
):
    project.rankings_per_set = 2
    project.save()
    people = trainers(project, 5)
    for _ in range(30):
        make_ranking_set(project, k=3, needed=2)
    clients = [retrying_client(person) for person in people[:4]]
    # One submit is held inside its transaction when the server goes down: it must get a 503.
    held_client = retrying_client(people[4])
    held = _claim(held_client, project.slug).body
    hold = RowHold(held["id"])
    thread, outcome = _submit_in_background(held_client, held["id"], _order(held))
    wait_for(hold.someone_waits, timeout=20, message="the submit never reached the database")
    restarts = []

    def restart_while_they_work(running):
        time.sleep(1.0)
        restarts.append(postgres_cluster.restart())
        hold.release()

    acknowledged = _run_clients(clients, project.slug, restart_while_they_work)
    thread.join(timeout=30)
    assert not thread.is_alive(), "the held submit hung across the restart"
    answer = outcome.get("answer")
    assert answer is not None, f"the held submit got no HTTP answer: {outcome}"
    assert answer.status == 503 and answer.body["code"] == "database_unavailable", answer
    assert answer.headers.get("Retry-After") == "2"
    retried = held_client.call("POST", f"/api/v1/tasks/{held['id']}/submit", _order(held))
    assert retried.status == 200, retried
    acknowledged.append((held["ranking_set"], held["id"]))

    unavailable = sum(c.met["503"] for c in clients)
    print(f"\nPostgreSQL restarted in {restarts[0]:.1f} s; {unavailable} answers were 503")
    _assert_nothing_lost_or_doubled(project, acknowledged, [*clients, held_client])
    assert len(acknowledged) == 60

"""The PostgreSQL benchmarks' own database: made on the server DATABASE_URL names, Django set up
on it, and dropped afterwards unless the run keeps it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")


def bench_database(server_url: str, name: str, *, reuse: bool = False) -> tuple[str, bool]:
    """The URL of the database `name` beside the one `server_url` names, and whether it was
    kept from an earlier run (only with `reuse`); otherwise it is made afresh. A server that is
    not PostgreSQL ends the benchmark with the reason."""
    import psycopg2

    parsed = urlparse(server_url)
    if parsed.scheme not in POSTGRES_SCHEMES:
        sys.exit(f"{sys.argv[0]} needs PostgreSQL: set DATABASE_URL=postgres://...")
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        exists = cursor.fetchone() is not None
        if not (reuse and exists):
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cursor.execute(f"CREATE DATABASE {name}")
            exists = False
    admin.close()
    return parsed._replace(path=f"/{name}").geturl(), exists


def drop_bench_database(server_url: str, name: str) -> None:
    """Drop the database `name` (connections to it are ended first)."""
    import psycopg2

    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


def django_setup(db_url: str) -> None:
    """Django on the benchmark's database, its hosts allowing the test client's `testserver`."""
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    os.environ.setdefault("DEBUG", "false")
    hosts = [h for h in os.environ.get("ALLOWED_HOSTS", "testserver,localhost").split(",") if h]
    if "testserver" not in hosts:
        hosts.append("testserver")
    os.environ["ALLOWED_HOSTS"] = ",".join(hosts)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def seeded_sets(slug: str = "bench") -> int:
    """The ranking sets of the project `slug` in the database Django uses; -1 when the database
    cannot say (not migrated, or half seeded)."""
    from annotations.models import RankingSet

    try:
        return RankingSet.objects.filter(project__slug=slug).count()
    except Exception:  # an unmigrated or half-seeded database
        return -1


def kept_or_fresh_database(
    server_url: str, name: str, *, reuse: bool, sets: int
) -> tuple[str, bool]:
    """Django set up on the benchmark's database `name`, its URL, and whether it is a kept one
    (only with `reuse`) that already holds the project "bench" with `sets` ranking sets. A kept
    one holding another number is made afresh."""
    db_url, seeded = bench_database(server_url, name, reuse=reuse)
    django_setup(db_url)
    if seeded and (found := seeded_sets()) != sets:
        print(f"the kept database holds {found:,} sets, not {sets:,}: seeding again")
        from django.db import connection

        connection.close()
        db_url, seeded = bench_database(server_url, name)
    return db_url, seeded

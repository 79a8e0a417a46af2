"""One-shot: one login role per application (prefect, mlflow, airflow), each the
owner of its own database and able to connect to no other; the superuser
(POSTGRES_USER) is left to this script. Idempotent: `docker compose up` runs it
on every start and sets each role's password again; in a volume from before the
roles existed, it hands the application's tables, views, sequences, types and
functions over to its role.

Reads PGHOST, PGPORT, POSTGRES_USER, POSTGRES_PASSWORD and, per application,
POSTGRES_<APP>_PASSWORD from its environment (docker-compose.yml).
"""

import contextlib
import os
import sys
import time

import psycopg2
from psycopg2 import sql

APPS = ("prefect", "mlflow", "airflow")
# What the superuser may own in an application's database, and how to hand it over.
SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'"
OWNED = {
    "TABLE": "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    f"WHERE c.relowner = %(owner)s::regrole AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {SCHEMAS}",
    # Sequences a table's column owns follow their table.
    "SEQUENCE": "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    f"WHERE c.relowner = %(owner)s::regrole AND c.relkind = 'S' AND {SCHEMAS} "
    "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i'))",
    "TYPE": "SELECT format('%%I.%%I', n.nspname, t.typname) FROM pg_type t "
    "JOIN pg_namespace n ON n.oid = t.typnamespace "
    f"WHERE t.typowner = %(owner)s::regrole AND t.typtype IN ('e', 'd', 'c') AND {SCHEMAS} "
    "AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')",
    "FUNCTION": "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    f"WHERE p.proowner = %(owner)s::regrole AND {SCHEMAS}",
}


def connect(dbname: str):
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = psycopg2.connect(
                dbname=dbname, user=os.environ["POSTGRES_USER"], password=os.environ["POSTGRES_PASSWORD"]
            )
            connection.autocommit = True
            return connection
        except psycopg2.OperationalError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"error: cannot reach Postgres as {os.environ['POSTGRES_USER']}: {exc}") from None
            time.sleep(1)


def main() -> int:
    admin = os.environ["POSTGRES_USER"]
    # Not `with connection:`, which opens a transaction (CREATE DATABASE refuses one).
    server = connect("postgres")
    with contextlib.closing(server), server.cursor() as cur:
        for app in APPS:
            password = os.environ[f"POSTGRES_{app.upper()}_PASSWORD"]
            role, database = sql.Identifier(app), sql.Identifier(app)
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (app,))
            verb = "ALTER" if cur.fetchone() else "CREATE"
            cur.execute(
                sql.SQL(verb + " ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %s").format(role),
                (password,),
            )
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (app,))
            if not cur.fetchone():
                cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))
            cur.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(database, role))
            cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database))
            print(f"role {app}: {verb.lower()}d, owns database {app}")
        # The superuser's own database is nobody else's either.
        cur.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(admin)))
    for app in APPS:
        db = connect(app)
        with contextlib.closing(db), db.cursor() as cur:
            moved = 0
            for kind, query in OWNED.items():
                cur.execute(query, {"owner": admin})
                for (name,) in cur.fetchall():
                    cur.execute(sql.SQL(f"ALTER {kind} {name} OWNER TO {{}}").format(sql.Identifier(app)))
                    moved += 1
            cur.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(app)))
            if moved:
                print(f"database {app}: {moved} objects of {admin} handed to role {app}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

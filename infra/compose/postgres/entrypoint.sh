#!/bin/sh
# The official postgres image's entrypoint contract, for Debian's PostgreSQL:
# on an empty PGDATA, initdb with POSTGRES_USER / POSTGRES_PASSWORD (scram),
# create POSTGRES_DB, run /docker-entrypoint-initdb.d/*.sh and *.sql against
# a server on the unix socket only, then exec the command.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set: the compose file passes it from .env}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}

discard_half_init() {
    status=$?
    if [ "$status" != 0 ]; then find "$PGDATA" -mindepth 1 -delete; fi
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    # Half an initialisation is worse than none: on any failure, empty PGDATA
    # so that the next start (restart: unless-stopped) begins again.
    trap 'discard_half_init' EXIT
    # The temporary server listens on the unix socket only, at 5432; the
    # container's PGPORT (the real port, host network) comes back after.
    real_pgport=${PGPORT:-}
    export PGPORT=5432
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    printf "host all all all scram-sha-256\n" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$db" != postgres ]; then
        psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres -c "CREATE DATABASE \"$db\""
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) echo "running $f"; sh "$f" ;;
            *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 --username "$user" --dbname "$db" -f "$f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    trap - EXIT
    if [ -n "$real_pgport" ]; then export PGPORT="$real_pgport"; else unset PGPORT; fi
    echo "PostgreSQL init process complete; ready for start up."
fi
exec "$@"

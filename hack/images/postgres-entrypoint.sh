#!/bin/sh
# Entrypoint of the PostgreSQL image hack/images.sh builds from Debian's packages, with the interface of the
# official image's: on an empty PGDATA it runs initdb as the postgres user with superuser POSTGRES_USER
# (default postgres) and password POSTGRES_PASSWORD (required), creates database POSTGRES_DB (default: the user
# name), allows password (SCRAM) logins from any address, then runs `postgres -D PGDATA` as the postgres user,
# listening on every address of the pod. Started as another user than root (a pod's runAsUser: the operator runs
# it as uid 70, the official Alpine image's postgres user, which this image's postgres user is too), it does the
# same as that user, without changing any ownership: PGDATA's parent must be writable by it. Other commands
# (`sh`, `psql`, ...) run as given.
set -eu

if [ "${1:-postgres}" != postgres ]; then exec "$@"; fi

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ "$(id -u)" = 0 ]; then
    as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
    mkdir -p "$PGDATA" /run/postgresql
    chown postgres:postgres "$PGDATA" /run/postgresql
else
    as_postgres() { "$@"; }
    mkdir -p "$PGDATA"
fi
chmod 700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "postgres-entrypoint: POSTGRES_PASSWORD is required to initialise $PGDATA" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    [ "$(id -u)" != 0 ] || chown postgres "$pwfile"
    as_postgres initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
    if [ "$POSTGRES_DB" != postgres ]; then
        printf 'CREATE DATABASE "%s" OWNER "%s";\n' "$POSTGRES_DB" "$POSTGRES_USER" \
            | as_postgres postgres --single -j -D "$PGDATA" postgres >/dev/null
    fi
    echo "postgres-entrypoint: initialised $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)" >&2
fi

if [ "$(id -u)" = 0 ]; then
    exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" -c listen_addresses='*'
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'

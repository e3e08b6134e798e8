#!/bin/sh
# Sets the password of the user postgres from POSTGRES_PASSWORD, then serves on every address.
set -e
PG=/usr/lib/postgresql/15/bin
$PG/pg_ctl -D /var/lib/postgresql/data -o '-c listen_addresses=localhost' -w start >/dev/null
$PG/psql -q -U postgres -c "ALTER USER postgres PASSWORD '$POSTGRES_PASSWORD'"
$PG/pg_ctl -D /var/lib/postgresql/data -m fast -w stop >/dev/null
exec $PG/postgres -D /var/lib/postgresql/data -c listen_addresses='*' -c jit=off

#!/bin/bash
# The replica: on first start, copy the primary with pg_basebackup (-R
# writes standby.signal and primary_conninfo), then run as a hot standby.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	until pg_isready -h postgres-primary -p 5432 -U "$POSTGRES_USER"; do sleep 1; done
	export PGPASSWORD="$REPLICATION_PASSWORD"
	pg_basebackup -h postgres-primary -p 5432 -U replicator -D "$PGDATA" -R -X stream -c fast
	chmod 0700 "$PGDATA"
fi
exec docker-entrypoint.sh postgres -c hot_standby=on

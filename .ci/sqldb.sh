#!/usr/bin/env bash
# Makes the SQL storage tests runnable: installs PostgreSQL and MariaDB with
# apt-get when missing, starts them when stopped, waits until they answer on
# 127.0.0.1, creates a fresh database on each and prints the DSNs as export
# lines (everything else goes to stderr):
#
#   eval "$(bash .ci/sqldb.sh)"
#   go test -race ./storage/...
#
# Test databases are named nanomdm_test_<unix time>_<random>; ones older
# than six hours are dropped on the way.
set -euo pipefail

log() { echo "sqldb: $*" >&2; }

PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres
MY_HOST=127.0.0.1 MY_PORT=3306 MY_USER=root

psql_() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres "$@"; }
mysql_() { mariadb --protocol=tcp -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" "$@"; }

wait_for() { # wait_for NAME COMMAND...
	local name=$1
	shift
	for _ in $(seq 1 60); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 1
	done
	log "$name did not become ready"
	return 1
}

# --- install -------------------------------------------------------------
missing=()
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql postgresql-client)
[ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server mariadb-client)
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq "${missing[@]}" >&2
fi

# --- PostgreSQL ----------------------------------------------------------
pg_version=$(ls /etc/postgresql | sort -V | tail -n 1)
if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
	log "starting PostgreSQL $pg_version"
	pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start >&2 || true
fi
wait_for PostgreSQL pg_isready -q -h "$PG_HOST" -p "$PG_PORT"
if ! psql_ -c 'SELECT 1' >/dev/null 2>&1; then
	# A fresh Debian cluster asks for a password over TCP: trust loopback.
	hba=/etc/postgresql/$pg_version/main/pg_hba.conf
	log "allowing passwordless loopback connections in $hba"
	sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
	pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload >&2
	wait_for "PostgreSQL login" psql_ -c 'SELECT 1'
fi

# --- MariaDB -------------------------------------------------------------
if ! mysql_ -e 'SELECT 1' >/dev/null 2>&1; then
	mkdir -p /run/mysqld
	chown mysql:mysql /run/mysqld 2>/dev/null || true
	if ! mariadb-admin --protocol=socket ping >/dev/null 2>&1; then
		log "starting MariaDB"
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql >&2
	fi
	wait_for MariaDB mariadb-admin --protocol=socket ping
	if ! mysql_ -e 'SELECT 1' >/dev/null 2>&1; then
		# A fresh install lets root in only over the socket: add a
		# passwordless loopback root for the tests.
		log "adding root@127.0.0.1 to MariaDB"
		mariadb --protocol=socket -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
			GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;" >&2
	fi
	wait_for "MariaDB login" mysql_ -e 'SELECT 1'
fi

# --- fresh databases -----------------------------------------------------
now=$(date +%s)
stale() { # stale NAME: true for a test database older than six hours
	local t=${1#nanomdm_test_}
	t=${t%%_*}
	[[ $t =~ ^[0-9]+$ ]] && [ $((now - t)) -gt 21600 ]
}
for db in $(psql_ -At -c "SELECT datname FROM pg_database WHERE datname LIKE 'nanomdm\_test\_%'"); do
	if stale "$db"; then
		log "dropping old PostgreSQL database $db"
		psql_ -c "DROP DATABASE IF EXISTS \"$db\"" >&2 || true
	fi
done
for db in $(mysql_ -N -e "SHOW DATABASES LIKE 'nanomdm\_test\_%'"); do
	if stale "$db"; then
		log "dropping old MariaDB database $db"
		mysql_ -e "DROP DATABASE IF EXISTS \`$db\`" >&2 || true
	fi
done

name=nanomdm_test_${now}_$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
psql_ -c "CREATE DATABASE \"$name\"" >&2
mysql_ -e "CREATE DATABASE \`$name\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin" >&2
log "created database $name on PostgreSQL and MariaDB"

echo "export NANOMDM_TEST_PGSQL_DSN='host=$PG_HOST port=$PG_PORT user=$PG_USER dbname=$name sslmode=disable'"
echo "export NANOMDM_TEST_MYSQL_DSN='$MY_USER@tcp($MY_HOST:$MY_PORT)/$name'"

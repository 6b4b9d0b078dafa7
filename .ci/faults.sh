#!/usr/bin/env bash
# Fault tests (cmd/nanomdm/faults_test.go, build tag "faults"): database
# outages mid-load on PostgreSQL and MariaDB, SIGKILL of the server during
# load on file, PostgreSQL and MariaDB storage, and SIGTERM during load.
# They stop and start the local database servers, so they are kept out of
# the default suite; run them alone, as root:
#
#   bash .ci/faults.sh                 # all of them
#   bash .ci/faults.sh -run Kill9      # extra arguments go to go test
#
# Whatever happens, both databases are running again when this exits.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(bash .ci/sqldb.sh)"

restore() {
	status=$?
	pg_version=$(ls /etc/postgresql | sort -V | tail -n 1)
	if ! pg_isready -q -h 127.0.0.1 -p 5432; then
		echo "faults: restarting PostgreSQL" >&2
		pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start >&2 || true
	fi
	if ! mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; then
		echo "faults: restarting MariaDB" >&2
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd >&2 || true
	fi
	for _ in $(seq 1 60); do
		if pg_isready -q -h 127.0.0.1 -p 5432 &&
			mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; then
			exit $status
		fi
		sleep 1
	done
	echo "faults: a database did not come back" >&2
	exit 1
}
trap restore EXIT

args=("$@")
if [ ${#args[@]} -eq 0 ]; then
	args=(-run '^TestFault')
fi
go test -tags faults -count=1 -v -timeout 20m "${args[@]}" ./cmd/nanomdm

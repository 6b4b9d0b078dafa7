#!/usr/bin/env bash
# A three-node MariaDB Galera cluster on loopback, for the cluster tests
# (cmd/nanomdm/cluster_test.go, which runs this script itself) and for
# trying things by hand. It never touches the system MariaDB on 3306: each
# node has its own configuration file (read alone, --defaults-file), data
# directory, socket and ports under DIR.
#
#   bash .ci/galera.sh start DIR         # bootstrap node 1, join 2 and 3, wait for size 3
#   bash .ci/galera.sh stop DIR          # stop every node (SIGTERM, then SIGKILL)
#   bash .ci/galera.sh stop-node DIR N   # stop node N (1-3) only
#   bash .ci/galera.sh start-node DIR N  # start node N again: it rejoins (IST)
#   bash .ci/galera.sh run CMD...        # start in a temporary directory, run CMD
#                                        # with GALERA_DSNS set, always stop
#
# Ports (node N = 1, 2, 3), all on 127.0.0.1, moved together by
# GALERA_PORT_OFFSET (default 0):
#   SQL 23300+N, group communication 24560+N, IST 24570+N, SST (rsync) 24440+N.
# They lie below the kernel's ephemeral range (32768-60999): a fixed port
# inside it can be taken, at the moment a node binds it, by the local end
# of any outgoing connection (seen here: "Address already in use").
# Root connects without a password over TCP from 127.0.0.1.
#
# start prints one line per node to stdout: "node N PID DSN". Everything
# else goes to stderr. A start that fails stops whatever it had started.
set -euo pipefail

PROVIDER=/usr/lib/galera/libgalera_smm.so
OFFSET=${GALERA_PORT_OFFSET:-0}
NODES=3

log() { echo "galera: $*" >&2; }
die() { log "$*"; exit 1; }

sql_port() { echo $((23300 + OFFSET + $1)); }
gcomm_port() { echo $((24560 + OFFSET + $1)); }
ist_port() { echo $((24570 + OFFSET + $1)); }
sst_port() { echo $((24440 + OFFSET + $1)); }

# Installs what is missing from the distribution.
install() {
	local missing=()
	[ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server mariadb-client)
	[ -f "$PROVIDER" ] || missing+=(galera-4)
	command -v rsync >/dev/null || missing+=(rsync)
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
	fi
}

# config N: the option file of node N, the only one mariadbd reads.
config() {
	local n=$1 dir=$DIR/node$1 peers=""
	for i in $(seq 1 $NODES); do
		peers+="${peers:+,}127.0.0.1:$(gcomm_port "$i")"
	done
	cat <<EOF
[mariadbd]
datadir=$dir/data
socket=$dir/mariadbd.sock
pid-file=$dir/mariadbd.pid
log-error=$dir/error.log
port=$(sql_port "$n")
bind-address=127.0.0.1
skip-name-resolve
# Small, for tests on a shared machine.
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
max_connections=200

# What Galera requires: row-based replication, InnoDB, interleaved
# auto-increment locks.
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
# The cluster, not one node's log, keeps committed transactions durable.
innodb_flush_log_at_trx_commit=0

wsrep_on=ON
wsrep_provider=$PROVIDER
wsrep_cluster_name=nanomdm_ci
wsrep_cluster_address=gcomm://$peers
wsrep_node_name=node$n
wsrep_node_address=127.0.0.1:$(gcomm_port "$n")
wsrep_provider_options="gmcast.listen_addr=tcp://127.0.0.1:$(gcomm_port "$n");ist.recv_addr=127.0.0.1:$(ist_port "$n");gcache.size=64M"
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:$(sst_port "$n")
# Refuse tables Galera cannot replicate safely: without a primary key, or
# not InnoDB.
wsrep_mode=REQUIRED_PRIMARY_KEY,STRICT_REPLICATION
EOF
}

pid_of() { cat "$DIR/node$1/mariadbd.pid" 2>/dev/null || true; }
client() { local n=$1; shift; mariadb --no-defaults --socket="$DIR/node$n/mariadbd.sock" -u root -N -B "$@"; }
status_of() { client "$1" -e "SHOW STATUS LIKE '$2'" 2>/dev/null | cut -f2; }

# launch N [ARGS]: starts node N in the background, detached from our
# output so that callers reading it are not held open.
launch() {
	local n=$1
	shift
	local user=()
	if [ "$(id -u)" = 0 ]; then
		user=(--user=mysql)
		chown -R mysql:mysql "$DIR/node$n"
	fi
	setsid /usr/sbin/mariadbd --defaults-file="$DIR/node$n/my.cnf" "${user[@]}" "$@" \
		</dev/null >>"$DIR/node$n/stdout.log" 2>&1 &
}

# wait_synced N: until node N is Synced and the cluster has want nodes.
wait_synced() {
	local n=$1 want=$2
	for _ in $(seq 1 600); do
		if [ "$(status_of "$n" wsrep_local_state_comment)" = Synced ] &&
			[ "$(status_of "$n" wsrep_cluster_size)" = "$want" ]; then
			return 0
		fi
		if [ -z "$(pid_of "$n")" ] && [ -f "$DIR/node$n/started" ] &&
			! pgrep -f -- "--defaults-file=$DIR/node$n/my.cnf" >/dev/null; then
			tail -30 "$DIR/node$n/error.log" >&2 || true
			die "node $n exited"
		fi
		sleep 0.2
	done
	tail -30 "$DIR/node$n/error.log" >&2 || true
	die "node $n not synced in a cluster of $want within 120s"
}

start_node() {
	local n=$1
	shift
	touch "$DIR/node$n/started"
	launch "$n" "$@"
}

# stop_node N: SIGTERM, then SIGKILL after 30s; waits for the exit.
stop_node() {
	local n=$1 pids
	pids=$(pgrep -f -- "--defaults-file=$DIR/node$n/my.cnf" || true)
	[ -n "$pids" ] || return 0
	kill $pids 2>/dev/null || true
	for _ in $(seq 1 150); do
		pgrep -f -- "--defaults-file=$DIR/node$n/my.cnf" >/dev/null || return 0
		sleep 0.2
	done
	log "node $n did not stop in 30s: SIGKILL"
	kill -9 $pids 2>/dev/null || true
	while pgrep -f -- "--defaults-file=$DIR/node$n/my.cnf" >/dev/null; do sleep 0.1; done
}

stop_all() {
	for n in $(seq $NODES -1 1); do
		stop_node "$n"
	done
}

start_cluster() {
	install
	for n in $(seq 1 $NODES); do
		for p in $(sql_port "$n") $(gcomm_port "$n") $(ist_port "$n") $(sst_port "$n"); do
			if ss -Hltn "sport = :$p" | grep -q .; then
				die "port $p is in use (another cluster? set GALERA_PORT_OFFSET)"
			fi
		done
	done
	mkdir -p "$DIR"
	chmod 755 "$DIR"
	trap 'status=$?; if [ $status -ne 0 ]; then stop_all; fi; exit $status' EXIT
	for n in $(seq 1 $NODES); do
		mkdir -p "$DIR/node$n/data"
		config "$n" >"$DIR/node$n/my.cnf"
	done
	# Node 1 gets the system tables and founds the cluster. A joiner with an
	# empty data directory would receive everything by state snapshot
	# transfer (rsync, some 20 s each here); copying node 1's cleanly
	# stopped directory instead gives the joiners the cluster's state, so
	# they join at once. (An operator's new node simply joins: SST.)
	mariadb-install-db --defaults-file="$DIR/node1/my.cnf" --auth-root-authentication-method=normal \
		--skip-test-db >"$DIR/node1/install.log" 2>&1 || { cat "$DIR/node1/install.log" >&2; die "mariadb-install-db failed"; }
	start_node 1 --wsrep-new-cluster
	wait_synced 1 1
	client 1 -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
		GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
	stop_node 1
	for n in $(seq 2 $NODES); do
		cp -a "$DIR/node1/data/." "$DIR/node$n/data/"
		rm -f "$DIR/node$n/data/galera.cache"
	done
	start_node 1 --wsrep-new-cluster
	wait_synced 1 1
	for n in $(seq 2 $NODES); do
		start_node "$n"
	done
	for n in $(seq 2 $NODES); do
		wait_synced "$n" $NODES
	done
	for n in $(seq 1 $NODES); do
		echo "node $n $(pid_of "$n") root@tcp(127.0.0.1:$(sql_port "$n"))/"
	done
	log "cluster of $NODES up in $DIR"
}

cmd=${1:-}
case "$cmd" in
start | stop)
	[ $# = 2 ] || die "usage: $0 $cmd DIR"
	DIR=$(realpath -m "$2")
	if [ "$cmd" = start ]; then start_cluster; else stop_all; fi
	;;
stop-node | start-node)
	[ $# = 3 ] && [[ $3 =~ ^[1-3]$ ]] || die "usage: $0 $cmd DIR N (N 1 to 3)"
	DIR=$(realpath -m "$2")
	if [ "$cmd" = stop-node ]; then
		stop_node "$3"
	else
		start_node "$3"
		wait_synced "$3" $NODES
	fi
	;;
run)
	shift
	[ $# -gt 0 ] || die "usage: $0 run CMD..."
	DIR=$(mktemp -d /tmp/galera.XXXXXX)
	start_cluster >"$DIR/nodes"
	trap 'status=$?; stop_all; rm -rf "$DIR"; exit $status' EXIT
	GALERA_DSNS=$(awk '{print $4}' "$DIR/nodes" | paste -sd' ')
	export GALERA_DSNS
	"$@"
	;;
*)
	die "usage: $0 start DIR | stop DIR | stop-node DIR N | start-node DIR N | run CMD..."
	;;
esac

package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql" // the mysql driver, for -db-driver mysql
	_ "github.com/lib/pq"              // the postgres driver, for -db-driver pgsql
)

// dbProbe asks the database behind a SQL backend how many sessions it
// has had, over one connection of its own that stays open for the run.
type dbProbe struct {
	driver string
	db     *sql.DB
	pid    int // the database server, when it runs here
}

func openDBProbe(ctx context.Context, driver, dsn string) (*dbProbe, error) {
	name := map[string]string{"pgsql": "postgres", "mysql": "mysql"}[driver]
	if name == "" {
		return nil, fmt.Errorf("-db-driver %q: want pgsql or mysql", driver)
	}
	db, err := sql.Open(name, dsn)
	if err != nil {
		return nil, fmt.Errorf("opening database probe: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting database probe: %w", err)
	}
	return &dbProbe{driver: driver, db: db}, nil
}

func (p *dbProbe) Close() error { return p.db.Close() }

// serverPID finds the database server's process when it runs on this
// machine: the parent of our PostgreSQL backend (the postmaster), or the
// PID in MariaDB's and MySQL's pid file. It returns 0 when it cannot tell.
func (p *dbProbe) serverPID(ctx context.Context) int {
	switch p.driver {
	case "pgsql":
		var backend int
		if err := p.db.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
			return 0
		}
		st, err := readProcStat(backend)
		if err != nil {
			return 0
		}
		return st.ppid
	case "mysql":
		var path string
		if err := p.db.QueryRowContext(ctx, "SELECT @@pid_file").Scan(&path); err != nil {
			return 0
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return 0
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return 0
		}
		if _, err := readProcStat(pid); err != nil {
			return 0
		}
		return pid
	}
	return 0
}

// sessions returns the sessions opened so far (a counter) and those open
// now, not counting the probe's own.
func (p *dbProbe) sessions(ctx context.Context) (opened, open int64, err error) {
	switch p.driver {
	case "pgsql":
		// Statistics are read fresh, not from this session's snapshot.
		if _, err := p.db.ExecContext(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
			return 0, 0, err
		}
		err = p.db.QueryRowContext(ctx,
			"SELECT sessions FROM pg_stat_database WHERE datname = current_database()").Scan(&opened)
		if err != nil {
			return 0, 0, fmt.Errorf("reading pg_stat_database: %w", err)
		}
		err = p.db.QueryRowContext(ctx,
			"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()").Scan(&open)
		if err != nil {
			return 0, 0, fmt.Errorf("reading pg_stat_activity: %w", err)
		}
		return opened, open, nil
	case "mysql":
		var name string
		err = p.db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Connections'").Scan(&name, &opened)
		if err != nil {
			return 0, 0, fmt.Errorf("reading connection count: %w", err)
		}
		err = p.db.QueryRowContext(ctx,
			"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND ID <> CONNECTION_ID()").Scan(&open)
		if err != nil {
			return 0, 0, fmt.Errorf("reading process list: %w", err)
		}
		return opened, open, nil
	}
	return 0, 0, fmt.Errorf("unknown driver %q", p.driver)
}

// sessionsNote says what the session counts include.
func (p *dbProbe) sessionsNote() string {
	if p.driver == "mysql" {
		return "opened counts connections to the whole server (Connections status); open counts sessions on this database"
	}
	return "counts sessions on this database (pg_stat_database.sessions, pg_stat_activity)"
}

// cpuSample is the CPU time used so far by each process (PostgreSQL) or
// thread (MariaDB, MySQL) that works for the database under test.
type cpuSample map[int]time.Duration

// since returns the CPU time used between an earlier sample and s by the
// processes or threads in s. One that ended in between is lost; one that
// started counts from zero.
func (s cpuSample) since(earlier cpuSample) time.Duration {
	var d time.Duration
	for id, cpu := range s {
		d += cpu - earlier[id]
	}
	return d
}

// sample reads the CPU time of the sessions of the database under test
// (not the probe's own) and of the database server's background
// processes or threads, which work for every database (WAL writing,
// checkpoints, InnoDB's purge and flushing). Sessions of other databases
// on the same server are left out, so other tenants do not count.
func (p *dbProbe) sample(ctx context.Context) (cpuSample, error) {
	out := cpuSample{}
	switch p.driver {
	case "pgsql":
		rows, err := p.db.QueryContext(ctx, `
SELECT pid FROM pg_stat_activity
WHERE pid <> pg_backend_pid()
  AND (datname = current_database() OR (backend_type <> 'client backend' AND datname IS NULL))`)
		if err != nil {
			return nil, fmt.Errorf("listing sessions: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var pid int
			if err := rows.Scan(&pid); err != nil {
				return nil, err
			}
			if st, err := readProcStat(pid); err == nil {
				out[pid] = st.cpu
			}
		}
		return out, rows.Err()
	case "mysql":
		if p.pid == 0 {
			return nil, errors.New("the database server does not run on this machine")
		}
		rows, err := p.db.QueryContext(ctx, "SELECT TID, COALESCE(DB = DATABASE(), FALSE) FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()")
		if err != nil {
			return nil, fmt.Errorf("listing sessions: %w", err)
		}
		defer rows.Close()
		sessions := map[int]bool{} // thread ID -> belongs to our database
		for rows.Next() {
			var tid int
			var ours bool
			if err := rows.Scan(&tid, &ours); err != nil {
				return nil, err
			}
			sessions[tid] = ours
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		// The probe's own thread is not listed above, so find it to
		// leave it out of the background threads.
		var own int
		if err := p.db.QueryRowContext(ctx, "SELECT TID FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()").Scan(&own); err == nil {
			sessions[own] = false
		}
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.pid))
		if err != nil {
			return nil, err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if ours, isSession := sessions[tid]; isSession && !ours {
				continue
			}
			if st, err := readProcStat2(p.pid, tid); err == nil {
				out[tid] = st.cpu
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown driver %q", p.driver)
}

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The kernel reports CPU times in clock ticks of USER_HZ, 100 per second
// on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procStat is what the load tool reads from /proc/PID/stat.
type procStat struct {
	ppid     int
	cpu      time.Duration // user + system, all threads
	system   time.Duration // the system part of cpu
	children time.Duration // user + system of waited-for children
}

func readProcStat(pid int) (procStat, error) {
	return parseProcStat(fmt.Sprintf("/proc/%d/stat", pid))
}

// readProcStat2 reads the stat of one thread of a process.
func readProcStat2(pid, tid int) (procStat, error) {
	return parseProcStat(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
}

func parseProcStat(path string) (procStat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, err
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("%s: no command name", path)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("%s: %d fields", path, len(f)+2)
	}
	num := func(j int) int64 {
		v, _ := strconv.ParseInt(f[j-3], 10, 64)
		return v
	}
	return procStat{
		ppid:     int(num(4)),
		cpu:      time.Duration(num(14)+num(15)) * clockTick,
		system:   time.Duration(num(15)) * clockTick,
		children: time.Duration(num(16)+num(17)) * clockTick,
	}, nil
}

// processCPU returns the CPU time pid has used, and the part of it spent
// in the kernel.
func processCPU(pid int) (cpu, system time.Duration, err error) {
	st, err := readProcStat(pid)
	return st.cpu, st.system, err
}

// treeCPU returns the CPU time used by pid, its descendants, and the
// children they have waited for: all of a PostgreSQL server (one process
// per session, reaped by the postmaster), or of a MariaDB server (one
// process). The difference of two calls is the CPU the tree used in
// between, including sessions that ended.
func treeCPU(pid int) (time.Duration, error) {
	root, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	byParent := map[int][]int{}
	stats := map[int]procStat{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		st, err := readProcStat(p)
		if err != nil {
			continue // gone meanwhile
		}
		byParent[st.ppid] = append(byParent[st.ppid], p)
		stats[p] = st
	}
	total := root.cpu + root.children
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range byParent[p] {
			total += stats[c].cpu + stats[c].children
			queue = append(queue, c)
		}
	}
	return total, nil
}

// procMemory reads the resident set, its high-water mark and the thread
// count of pid from /proc/PID/status.
func procMemory(pid int) (rss, hwm int64, threads int, err error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		case "Threads":
			threads = int(n)
		}
	}
	return rss, hwm, threads, sc.Err()
}

// rssSampler records the largest resident set of a process while it runs.
type rssSampler struct {
	pid  int
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	peak int64
}

func startRSSSampler(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				s.sample()
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	if rss, _, _, err := procMemory(s.pid); err == nil {
		s.mu.Lock()
		s.peak = max(s.peak, rss)
		s.mu.Unlock()
	}
}

// end stops sampling and returns the peak.
func (s *rssSampler) end() int64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// queueHeader starts every queue file. Each further line is one
// outstanding command, in enqueue order, as tab-separated fields:
//
//	CommandUUID  quoted RequestType  NotNow count  first NotNow (Unix ns)  enqueued (Unix ns)
//
// A CommandUUID holds no control characters and the RequestType is
// Go-quoted, so neither can contain a tab or a newline. The enqueue times
// of one queue strictly increase, so each also names its entry's place
// (the inspection API's cursor); lines written before the field existed
// read as 0.
//
// A line of a tab and a CommandUUID marks that command done (its final
// report is stored): it is appended when the report arrives, so the
// command loop replaces no file. An unterminated last line is an append
// in progress (or torn by a crash) and is ignored.
const queueHeader = "nanomdm-queue 1\n"

type queueEntry struct {
	uuid        string
	requestType string
	notNowTally int
	notNowAt    int64
	at          int64 // enqueued, Unix ns
	done        bool  // a done line names it
}

func parseQueue(b []byte) ([]queueEntry, error) {
	rest, ok := bytes.CutPrefix(b, []byte(queueHeader))
	if !ok {
		return nil, errors.New("unknown queue format")
	}
	lines := strings.Split(string(rest), "\n")
	lines = lines[:len(lines)-1] // "" or an unterminated line
	entries := make([]queueEntry, 0, len(lines))
	for i, line := range lines {
		if line == "" {
			continue
		}
		if uuid, ok := strings.CutPrefix(line, "\t"); ok {
			if j := indexOf(entries, uuid); j >= 0 {
				entries[j].done = true
			}
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 && len(f) != 5 {
			return nil, fmt.Errorf("queue line %d: %d fields, want 5", i+1, len(f))
		}
		var e queueEntry
		var err error
		e.uuid = f[0]
		if e.requestType, err = strconv.Unquote(f[1]); err != nil {
			return nil, fmt.Errorf("queue line %d: request type: %w", i+1, err)
		}
		if e.notNowTally, err = strconv.Atoi(f[2]); err != nil {
			return nil, fmt.Errorf("queue line %d: NotNow count: %w", i+1, err)
		}
		if e.notNowAt, err = strconv.ParseInt(f[3], 10, 64); err != nil {
			return nil, fmt.Errorf("queue line %d: NotNow time: %w", i+1, err)
		}
		if len(f) == 5 {
			if e.at, err = strconv.ParseInt(f[4], 10, 64); err != nil {
				return nil, fmt.Errorf("queue line %d: enqueue time: %w", i+1, err)
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

func formatQueue(entries []queueEntry) []byte {
	b := make([]byte, 0, len(queueHeader)+len(entries)*80)
	b = append(b, queueHeader...)
	for _, e := range entries {
		b = append(b, e.uuid...)
		b = append(b, '\t')
		b = strconv.AppendQuote(b, e.requestType)
		b = append(b, '\t')
		b = strconv.AppendInt(b, int64(e.notNowTally), 10)
		b = append(b, '\t')
		b = strconv.AppendInt(b, e.notNowAt, 10)
		b = append(b, '\t')
		b = strconv.AppendInt(b, e.at, 10)
		b = append(b, '\n')
	}
	return b
}

func readQueue(c channel) ([]queueEntry, error) {
	b, err := readFile(c.path(queueFile))
	if err != nil || b == nil {
		return nil, err
	}
	q, err := parseQueue(b)
	if err != nil {
		return nil, fmt.Errorf("reading queue of %s: %w", c.id, err)
	}
	return q, nil
}

// writeQueue replaces the queue of c with its entries that are not done;
// an empty queue removes the file.
func (s *Storage) writeQueue(c channel, q []queueEntry) error {
	if q = pending(q); len(q) == 0 {
		return removeFile(c.path(queueFile))
	}
	return s.writeFile(c.path(queueFile), formatQueue(q))
}

func indexOf(q []queueEntry, uuid string) int {
	for i := range q {
		if q[i].uuid == uuid {
			return i
		}
	}
	return -1
}

// A command leaves an enrollment's queue when its final (non-NotNow)
// report is stored: a done line is appended to the queue file rather than
// the file replaced, which keeps the command loop free of file creation.
// CommandUUIDs are never reused, so a done line marks its command done for
// good. Done entries are dropped from the queue file the next time it is
// rewritten anyway (enqueue, NotNow), or when it grows past compactAt.
const compactAt = 32

// markDone appends the done line of uuid to the queue file of c. The
// caller holds the device's lock.
func (s *Storage) markDone(c channel, uuid string) error {
	f, err := os.OpenFile(c.path(queueFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("\t" + uuid + "\n"))
	if err == nil && s.sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// pending returns the entries of q that are not done.
func pending(q []queueEntry) []queueEntry {
	out := q[:0:0]
	for _, e := range q {
		if !e.done {
			out = append(out, e)
		}
	}
	return out
}

// StoreCommandReport implements storage.CommandQueueStore. Every report
// but Idle is appended to the result log (resultlog.go); a NotNow report
// also updates the command's NotNow count and time in the queue file, as
// the device will report the command again, and a final one marks the
// command done there.
func (s *Storage) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	c, err := s.requestChannel(r)
	if err != nil {
		return err
	}
	defer s.lock(c.deviceID)()
	if err := s.touch(c); err != nil {
		return fmt.Errorf("storing last seen: %w", err)
	}
	if report.Status == mdm.StatusIdle {
		return nil
	}
	q, err := readQueue(c)
	if err != nil {
		return err
	}
	i := indexOf(q, report.CommandUUID)
	if i < 0 || q[i].done {
		return fmt.Errorf("%w: %q", storage.ErrUnknownCommand, report.CommandUUID)
	}
	// The CommandUUID is in the queue, so it was validated at enqueue.
	if report.Status == mdm.StatusNotNow {
		if err := s.appendResult(c, kindNotNow, report.CommandUUID, report.Raw); err != nil {
			return fmt.Errorf("storing NotNow result: %w", err)
		}
		if q[i].notNowTally == 0 {
			q[i].notNowAt = s.now().UnixNano()
		}
		q[i].notNowTally++
		if err := s.writeQueue(c, q); err != nil {
			return fmt.Errorf("storing NotNow: %w", err)
		}
		return nil
	}
	if err := s.appendResult(c, kindFinal, report.CommandUUID, report.Raw); err != nil {
		return fmt.Errorf("storing command result: %w", err)
	}
	if len(q) > compactAt {
		q[i].done = true
		if err := s.writeQueue(c, q); err != nil {
			return fmt.Errorf("compacting queue: %w", err)
		}
		return nil
	}
	if err := s.markDone(c, report.CommandUUID); err != nil {
		return fmt.Errorf("marking command done: %w", err)
	}
	return nil
}

// RetrieveNextCommand implements storage.CommandQueueStore. It takes no
// lock: the queue file is replaced whole or has a done line appended (a
// partial one is ignored), and command files are written once, so it
// always reads a consistent queue.
func (s *Storage) RetrieveNextCommand(r *mdm.Request, skipNotNow bool) (*mdm.Command, error) {
	c, err := s.requestChannel(r)
	if err != nil {
		return nil, err
	}
	q, err := readQueue(c)
	if err != nil {
		return nil, err
	}
	for _, e := range q {
		if e.done || (skipNotNow && e.notNowTally > 0) {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(s.dir, commandsDir, e.uuid))
		if err != nil {
			return nil, fmt.Errorf("reading command %s: %w", e.uuid, err)
		}
		cmd := &mdm.Command{CommandUUID: e.uuid, Raw: raw}
		cmd.Command.RequestType = e.requestType
		return cmd, nil
	}
	return nil, nil
}

// ClearQueue implements storage.CommandQueueStore.
func (s *Storage) ClearQueue(r *mdm.Request) error {
	c, err := s.requestChannel(r)
	if err != nil {
		return err
	}
	defer s.lock(c.deviceID)()
	_, err = s.clearQueues(c)
	return err
}

// clearQueues empties the queues of c and its user channels and returns
// those channels. The caller holds the device's lock.
func (s *Storage) clearQueues(c channel) ([]channel, error) {
	chans, err := s.withUsers(c)
	if err != nil {
		return nil, err
	}
	for _, ch := range chans {
		if err := removeFile(ch.path(queueFile)); err != nil {
			return nil, fmt.Errorf("clearing queue of %s: %w", ch.id, err)
		}
	}
	return chans, nil
}

// EnqueueCommand implements storage.CommandEnqueuer. The command is
// written once to commands/; each enrollment's queue gets a line naming it.
func (s *Storage) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	path, err := s.safeName(commandsDir, cmd.CommandUUID)
	if err != nil {
		return nil, fmt.Errorf("%w: CommandUUID: %w", mdm.ErrInvalidCommand, err)
	}
	if len(cmd.Raw) == 0 {
		return nil, fmt.Errorf("%w: empty command", mdm.ErrInvalidCommand)
	}
	if err := s.createFile(path, cmd.Raw); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("%w: %q", storage.ErrDuplicateCommand, cmd.CommandUUID)
		}
		return nil, fmt.Errorf("storing command: %w", err)
	}
	entry := queueEntry{uuid: cmd.CommandUUID, requestType: cmd.Command.RequestType}
	var errs map[string]error
	enqueued := 0
	for _, id := range ids {
		err := ctx.Err()
		if err == nil {
			err = s.enqueue(id, entry)
		}
		if err != nil {
			if errs == nil {
				errs = map[string]error{}
			}
			errs[id] = err
			continue
		}
		enqueued++
	}
	if enqueued == 0 { // nothing enqueued: nothing kept
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing command enqueued nowhere: %w", err)
		}
	}
	return errs, nil
}

// enqueue appends entry to the queue of id.
func (s *Storage) enqueue(id string, entry queueEntry) error {
	c, err := s.channel(id)
	if err != nil {
		return err
	}
	defer s.lock(c.deviceID)()
	st, err := readState(c)
	if err != nil {
		return err
	}
	if !st.known() {
		return fmt.Errorf("%w: %q", storage.ErrUnknownEnrollment, id)
	}
	q, err := readQueue(c)
	if err != nil {
		return err
	}
	if indexOf(q, entry.uuid) >= 0 {
		return nil // the same ID twice in one call: queued once
	}
	entry.at = s.now().UnixNano()
	if n := len(q); n > 0 && q[n-1].at >= entry.at {
		entry.at = q[n-1].at + 1 // strictly increasing within the queue
	}
	if err := s.writeQueue(c, append(q, entry)); err != nil {
		return fmt.Errorf("enqueueing: %w", err)
	}
	return nil
}

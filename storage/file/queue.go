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
const queueHeader = "nanomdm-queue 1\n"

type queueEntry struct {
	uuid        string
	requestType string
	notNowTally int
	notNowAt    int64
	at          int64 // enqueued, Unix ns
}

func parseQueue(b []byte) ([]queueEntry, error) {
	rest, ok := bytes.CutPrefix(b, []byte(queueHeader))
	if !ok {
		return nil, errors.New("unknown queue format")
	}
	lines := strings.Split(string(rest), "\n")
	entries := make([]queueEntry, 0, len(lines))
	for i, line := range lines {
		if line == "" {
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

// writeQueue replaces the queue of c; an empty queue removes the file.
func (s *Storage) writeQueue(c channel, q []queueEntry) error {
	if len(q) == 0 {
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
// report is stored in results/. The queue file is not rewritten then: one
// new file per report instead of two keeps the command loop cheap, and
// CommandUUIDs are never reused, so a result marks its command done for
// good. Done entries are dropped from the queue file the next time it is
// rewritten anyway (enqueue, NotNow), or when it grows past compactAt.
const compactAt = 32

func (c channel) resultPath(uuid string) string {
	return filepath.Join(c.dir, resultsDir, uuid)
}

// notNowPath is where the latest NotNow report of a command is kept
// while the command is outstanding, for the inspection API.
func (c channel) notNowPath(uuid string) string {
	return filepath.Join(c.dir, notNowDir, uuid)
}

// isDone reports whether the command has a final result for c.
func isDone(c channel, uuid string) (bool, error) {
	ok, err := exists(c.resultPath(uuid))
	if err != nil {
		return false, fmt.Errorf("reading result of %s: %w", uuid, err)
	}
	return ok, nil
}

// pending returns the entries of q that are not done.
func pending(c channel, q []queueEntry) ([]queueEntry, error) {
	out := q[:0:0]
	for _, e := range q {
		done, err := isDone(c, e.uuid)
		if err != nil {
			return nil, err
		}
		if !done {
			out = append(out, e)
		}
	}
	return out, nil
}

// StoreCommandReport implements storage.CommandQueueStore. The raw report
// of a final status is kept in results/; a NotNow report only updates the
// command's NotNow count and time in the queue file, as the device will
// report the command again.
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
	done := false
	if i >= 0 {
		if done, err = isDone(c, report.CommandUUID); err != nil {
			return err
		}
	}
	if i < 0 || done {
		return fmt.Errorf("%w: %q", storage.ErrUnknownCommand, report.CommandUUID)
	}
	if report.Status == mdm.StatusNotNow {
		if err := s.writeInDir(c.notNowPath(report.CommandUUID), report.Raw); err != nil {
			return fmt.Errorf("storing NotNow result: %w", err)
		}
		if q[i].notNowTally == 0 {
			q[i].notNowAt = s.now().UnixNano()
		}
		q[i].notNowTally++
		if q, err = pending(c, q); err == nil {
			err = s.writeQueue(c, q)
		}
		if err != nil {
			return fmt.Errorf("storing NotNow: %w", err)
		}
		return nil
	}
	// The CommandUUID is in the queue, so it was validated at enqueue.
	if err := s.writeInDir(c.resultPath(report.CommandUUID), report.Raw); err != nil {
		return fmt.Errorf("storing command result: %w", err)
	}
	if q[i].notNowTally > 0 {
		// The final result supersedes the NotNow one.
		if err := removeFile(c.notNowPath(report.CommandUUID)); err != nil {
			return fmt.Errorf("removing NotNow result: %w", err)
		}
	}
	if len(q) > compactAt {
		if q, err = pending(c, q); err == nil {
			err = s.writeQueue(c, q)
		}
		if err != nil {
			return fmt.Errorf("compacting queue: %w", err)
		}
	}
	return nil
}

// RetrieveNextCommand implements storage.CommandQueueStore. It takes no
// lock: the queue file is only ever replaced whole, and result and command
// files are written once, so it always reads a consistent queue.
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
		if skipNotNow && e.notNowTally > 0 {
			continue
		}
		done, err := isDone(c, e.uuid)
		if err != nil {
			return nil, err
		}
		if done {
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
	if q, err = pending(c, q); err != nil {
		return err
	}
	if err := s.writeQueue(c, append(q, entry)); err != nil {
		return fmt.Errorf("enqueueing: %w", err)
	}
	return nil
}

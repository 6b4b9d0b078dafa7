package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// StoreCommandReport implements storage.CommandQueueStore.
//
// The queue statement is the commit point: it takes the command off the
// queue (or flags it not-now) only while its row is active, so of two
// reports racing for one command exactly one wins and the other gets
// ErrUnknownCommand. A separate result statement, where the dialect needs
// one, runs before it (see Queries.ReportDoneResult); the touch after a
// delete runs after it.
func (s *Store) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	ctx, id, _, err := requestIDs(r)
	if err != nil {
		return err
	}
	q := &s.d.Queries
	if report.Status == mdm.StatusIdle {
		if _, err := s.execRetry(ctx, "idle", q.Touch, Args{"id": id}); err != nil {
			return fmt.Errorf("storing idle report of %s: %w", id, err)
		}
		return nil
	}
	if report.CommandUUID == "" {
		return fmt.Errorf("%w: %s report without CommandUUID", storage.ErrUnknownCommand, report.Status)
	}
	if err := s.checkSize("command report", report.Raw); err != nil {
		return err
	}
	// before (the result) and after (the touch) are optional.
	var stmt, before, after string
	deleting := false
	switch {
	case report.Status == mdm.StatusNotNow:
		stmt, before = q.ReportNotNow, q.ReportNotNowResult
	case s.cfg.Delete:
		stmt, after, deleting = q.ReportDelete, q.ReportDeleteTouch, true
	default:
		stmt, before = q.ReportDone, q.ReportDoneResult
	}
	args := Args{
		"id":     id,
		"uuid":   report.CommandUUID,
		"status": report.Status,
		"result": []byte(report.Raw),
	}
	if before != "" {
		// Its affected-row count says nothing (MySQL counts an unchanged
		// upsert as 0): the queue statement decides.
		if _, err := s.execRetry(ctx, "report result", before, args); err != nil {
			return fmt.Errorf("storing %s result of %s for %s: %w", report.Status, id, report.CommandUUID, err)
		}
	}
	n, err := s.execRetry(ctx, "report", stmt, args)
	switch {
	case err != nil:
		return fmt.Errorf("storing %s report of %s for %s: %w", report.Status, id, report.CommandUUID, err)
	case n == 0:
		return fmt.Errorf("%w: %q", storage.ErrUnknownCommand, report.CommandUUID)
	}
	if after != "" {
		if _, err := s.execRetry(ctx, "report touch", after, args); err != nil {
			return fmt.Errorf("storing %s report of %s for %s: %w", report.Status, id, report.CommandUUID, err)
		}
	}
	if deleting {
		s.deleteOrphanCommands(ctx, []string{report.CommandUUID})
	}
	return nil
}

// RetrieveNextCommand implements storage.CommandQueueStore.
func (s *Store) RetrieveNextCommand(r *mdm.Request, skipNotNow bool) (*mdm.Command, error) {
	ctx, id, _, err := requestIDs(r)
	if err != nil {
		return nil, err
	}
	q := s.d.Queries.NextCommand
	if skipNotNow {
		q = s.d.Queries.NextCommandSkipNotNow
	}
	cmd := &mdm.Command{}
	var raw []byte
	found, err := s.scanOne(ctx, s.db, q, Args{"id": id}, &cmd.CommandUUID, &cmd.Command.RequestType, &raw)
	if err != nil {
		return nil, fmt.Errorf("retrieving next command of %s: %w", id, err)
	}
	if !found {
		return nil, nil
	}
	cmd.Raw = raw
	return cmd, nil
}

// ClearQueue implements storage.CommandQueueStore.
func (s *Store) ClearQueue(r *mdm.Request) error {
	ctx, id, deviceID, err := requestIDs(r)
	if err != nil {
		return err
	}
	var cleared []string
	err = s.inTx(ctx, "clear queue", func(tx *sql.Tx) error {
		cleared, err = s.clearQueues(ctx, tx, id, id == deviceID)
		return err
	})
	if err != nil {
		return fmt.Errorf("clearing queue of %s: %w", id, err)
	}
	s.deleteOrphanCommands(ctx, cleared)
	return nil
}

// queueBatch queues command uuid for those of ids that have an
// enrollment, and returns them: with the dialect's QueueForEnrollments
// in one statement, else by looking them up and inserting their rows.
func (s *Store) queueBatch(ctx context.Context, tx *sql.Tx, ids []string, uuid string) ([]string, error) {
	if q := s.d.Queries.QueueForEnrollments; q != "" {
		return s.scanStrings(ctx, tx, q, Args{"ids": ids, "uuid": uuid})
	}
	found, err := s.scanStrings(ctx, tx, s.d.Queries.SelectEnrollmentIDs, Args{"ids": ids})
	if err != nil || len(found) == 0 {
		return nil, err
	}
	rows := make(Rows, len(found))
	for i, id := range found {
		rows[i] = []any{id, uuid}
	}
	if _, err := s.exec(ctx, tx, s.d.Queries.InsertQueueRows, Args{"rows": rows}); err != nil {
		return nil, err
	}
	return found, nil
}

// errNothingQueued rolls back an enqueue that found no enrollment.
var errNothingQueued = errors.New("no enrollment to queue for")

// EnqueueCommand implements storage.CommandEnqueuer. The command row and
// every queue row are written in one transaction; the IDs are looked up
// and queued in batches that stay under the dialect's parameter limit, so
// one call may name any number of IDs. When no ID names an enrollment
// nothing is stored.
func (s *Store) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	if cmd == nil {
		return nil, fmt.Errorf("%w: nil command", mdm.ErrInvalidCommand)
	}
	if err := mdm.ValidateIDPart(cmd.CommandUUID); err != nil {
		return nil, fmt.Errorf("%w: CommandUUID: %w", mdm.ErrInvalidCommand, err)
	}
	if err := s.checkSize("command", cmd.Raw); err != nil {
		return nil, err
	}
	valid, errs := validIDs(ids)
	queued := map[string]bool{}
	if len(valid) > 0 {
		err := s.inTx(ctx, "enqueue", func(tx *sql.Tx) error {
			clear(queued)
			_, err := s.exec(ctx, tx, s.d.Queries.InsertCommand, Args{
				"uuid":         cmd.CommandUUID,
				"request_type": cmd.Command.RequestType,
				"command":      []byte(cmd.Raw),
			})
			if err != nil {
				if s.d.IsDuplicate(err) {
					return fmt.Errorf("%w: %q", storage.ErrDuplicateCommand, cmd.CommandUUID)
				}
				return err
			}
			// Two parameters per ID at most (InsertQueueRows).
			for _, batch := range batches(valid, s.batchSize(2)) {
				found, err := s.queueBatch(ctx, tx, batch, cmd.CommandUUID)
				if err != nil {
					return err
				}
				for _, id := range found {
					queued[id] = true
				}
			}
			if len(queued) == 0 {
				return errNothingQueued
			}
			return nil
		})
		if err != nil && !errors.Is(err, errNothingQueued) {
			if errors.Is(err, storage.ErrDuplicateCommand) {
				return nil, err
			}
			return nil, fmt.Errorf("enqueueing %s: %w", cmd.CommandUUID, err)
		}
	}
	for _, id := range valid {
		if !queued[id] {
			if errs == nil {
				errs = map[string]error{}
			}
			errs[id] = fmt.Errorf("%w: %q", storage.ErrUnknownEnrollment, id)
		}
	}
	return errs, nil
}

package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// The inspection API: read-only views of enrollments, queues and command
// results, and clearing a queue. Mount the handlers on ServeMux patterns
// that name the path values they read ({id}, {uuid}).

// MaxInspectLimit is the largest page of the inspection API; larger
// limits are lowered to it.
const MaxInspectLimit = 1000

// errBadQuery means a query parameter could not be understood.
var errBadQuery = errors.New("bad query parameter")

// inspectStatus is the status for an error of an inspection read.
func inspectStatus(err error) int {
	switch {
	case errors.Is(err, storage.ErrUnknownEnrollment), errors.Is(err, storage.ErrUnknownCommand):
		return http.StatusNotFound
	case errors.Is(err, storage.ErrBadCursor), errors.Is(err, errBadQuery), errors.Is(err, ErrBadIDs):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// writeInspectError answers err with its status, logging server errors.
func writeInspectError(w http.ResponseWriter, r *http.Request, logger log.Logger, what string, err error) {
	status := inspectStatus(err)
	if status == http.StatusInternalServerError {
		log.From(r.Context(), logger).Info("msg", what, "err", err)
	}
	mdmhttp.WriteJSONError(w, status, err)
}

// pageLimit reads the limit parameter: DefaultInspectLimit when absent,
// at most MaxInspectLimit.
func pageLimit(q url.Values) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return storage.DefaultInspectLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: limit %q: want a positive integer", errBadQuery, v)
	}
	return min(n, MaxInspectLimit), nil
}

// boolParam reads a true/false (1/0) parameter; absent is unset.
func boolParam(q url.Values, name string) (*bool, error) {
	v := q.Get(name)
	if v == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %q: want true or false", errBadQuery, name, v)
	}
	return &b, nil
}

// timeParam reads an RFC 3339 time; absent is the zero time.
func timeParam(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s %q: want an RFC 3339 time", errBadQuery, name, v)
	}
	return t, nil
}

// timeOrNil is t for JSON, nil (omitted) for the zero time.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// EnrollmentJSON is one enrollment in the inspection API.
type EnrollmentJSON struct {
	ID                     string     `json:"id"`
	ParentID               string     `json:"parent_id,omitempty"`
	Type                   string     `json:"type"`
	Enabled                bool       `json:"enabled"`
	SerialNumber           string     `json:"serial_number,omitempty"`
	Topic                  string     `json:"topic"`
	LastSeen               *time.Time `json:"last_seen,omitempty"`
	TokenUpdateTally       int        `json:"token_update_tally"`
	BootstrapTokenEscrowed bool       `json:"bootstrap_token_escrowed"`
}

// EnrollmentsResponse is a page of enrollments. NextCursor, when set,
// is the cursor parameter of the next page.
type EnrollmentsResponse struct {
	Enrollments []EnrollmentJSON `json:"enrollments"`
	NextCursor  string           `json:"next_cursor,omitempty"`
}

// enrollmentQuery builds the storage query of a list request.
func enrollmentQuery(q url.Values, maxIDs int) (*storage.EnrollmentQuery, error) {
	eq := &storage.EnrollmentQuery{
		SerialNumber: q.Get("serial_number"),
		Type:         q.Get("type"),
		After:        q.Get("cursor"),
	}
	for _, v := range q["id"] {
		for _, id := range strings.Split(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				eq.IDs = append(eq.IDs, id)
			}
		}
	}
	if len(eq.IDs) > maxIDs {
		return nil, fmt.Errorf("%w: %d ids, at most %d per call", ErrBadIDs, len(eq.IDs), maxIDs)
	}
	var err error
	if eq.Limit, err = pageLimit(q); err != nil {
		return nil, err
	}
	if eq.Enabled, err = boolParam(q, "enabled"); err != nil {
		return nil, err
	}
	if eq.LastSeenBefore, err = timeParam(q, "last_seen_before"); err != nil {
		return nil, err
	}
	if eq.LastSeenAfter, err = timeParam(q, "last_seen_after"); err != nil {
		return nil, err
	}
	return eq, nil
}

// EnrollmentsHandler lists enrollments in ID order, a page at a time.
// Query parameters: id (repeatable, or comma-separated), serial_number,
// type, enabled, last_seen_before, last_seen_after (RFC 3339), cursor
// and limit.
func EnrollmentsHandler(store storage.EnrollmentLister, opts ...Option) http.Handler {
	o := newOptions(opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := enrollmentQuery(r.URL.Query(), o.maxIDs)
		if err != nil {
			writeInspectError(w, r, o.logger, "listing enrollments", err)
			return
		}
		limit := q.Limit
		q.Limit++ // one more tells whether another page follows
		found, err := store.RetrieveEnrollments(r.Context(), q)
		if err != nil {
			writeInspectError(w, r, o.logger, "listing enrollments", err)
			return
		}
		found, next := page(found, limit, func(e storage.Enrollment) string { return e.ID })
		resp := EnrollmentsResponse{Enrollments: make([]EnrollmentJSON, 0, len(found)), NextCursor: next}
		for _, e := range found {
			resp.Enrollments = append(resp.Enrollments, EnrollmentJSON{
				ID:                     e.ID,
				ParentID:               e.ParentID,
				Type:                   e.Type,
				Enabled:                e.Enabled,
				SerialNumber:           e.SerialNumber,
				Topic:                  e.Topic,
				LastSeen:               timeOrNil(e.LastSeen),
				TokenUpdateTally:       e.TokenUpdateTally,
				BootstrapTokenEscrowed: e.HasBootstrapToken,
			})
		}
		mdmhttp.WriteJSON(w, http.StatusOK, resp)
	})
}

// pathID reads and validates the enrollment ID path value.
func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := mdm.ValidateEnrollmentID(id); err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrBadIDs, id, err)
	}
	return id, nil
}

// QueuedCommandJSON is one outstanding command in the inspection API.
// Status is absent until the device answers NotNow.
type QueuedCommandJSON struct {
	CommandUUID string     `json:"command_uuid"`
	RequestType string     `json:"request_type"`
	EnqueuedAt  *time.Time `json:"enqueued_at,omitempty"`
	Status      string     `json:"status,omitempty"`
	NotNowCount int        `json:"not_now_count"`
	NotNowAt    *time.Time `json:"not_now_at,omitempty"`
}

// QueueResponse is a page of one enrollment's queue.
type QueueResponse struct {
	ID         string              `json:"id"`
	Commands   []QueuedCommandJSON `json:"commands"`
	NextCursor string              `json:"next_cursor,omitempty"`
}

// QueueStore is what QueueHandler needs: to list a queue, to know
// whether an enrollment exists and to clear its queue.
type QueueStore interface {
	storage.QueueLister
	storage.EnrollmentLister
	ClearQueue(r *mdm.Request) error
}

// QueueHandler serves the queue of enrollment {id}. GET lists its
// outstanding commands in delivery order, a page at a time (cursor,
// limit). DELETE removes every outstanding command of the enrollment
// and, for a device channel, of its user channels, as a new Authenticate
// does. An unknown enrollment is 404; other methods are 405.
func QueueHandler(store QueueStore, opts ...Option) http.Handler {
	o := newOptions(opts)
	list, clear := listQueue(store, o), clearQueue(store, o)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			list(w, r)
		case http.MethodDelete:
			clear(w, r)
		default:
			w.Header().Add("Allow", http.MethodGet)
			w.Header().Add("Allow", http.MethodDelete)
			mdmhttp.WriteJSONError(w, http.StatusMethodNotAllowed, errors.New("method not allowed"))
		}
	})
}

func listQueue(store storage.QueueLister, o *options) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r)
		if err != nil {
			writeInspectError(w, r, o.logger, "listing queue", err)
			return
		}
		limit, err := pageLimit(r.URL.Query())
		if err != nil {
			writeInspectError(w, r, o.logger, "listing queue", err)
			return
		}
		found, err := store.RetrieveQueue(r.Context(), id, r.URL.Query().Get("cursor"), limit+1)
		if err != nil {
			writeInspectError(w, r, o.logger, "listing queue", err)
			return
		}
		found, next := page(found, limit, func(c storage.QueuedCommand) string { return c.Cursor })
		resp := QueueResponse{ID: id, Commands: make([]QueuedCommandJSON, 0, len(found)), NextCursor: next}
		for _, c := range found {
			resp.Commands = append(resp.Commands, QueuedCommandJSON{
				CommandUUID: c.CommandUUID,
				RequestType: c.RequestType,
				EnqueuedAt:  timeOrNil(c.EnqueuedAt),
				Status:      c.Status,
				NotNowCount: c.NotNowCount,
				NotNowAt:    timeOrNil(c.NotNowAt),
			})
		}
		mdmhttp.WriteJSON(w, http.StatusOK, resp)
	}
}

// ClearQueueResponse answers a cleared queue.
type ClearQueueResponse struct {
	ID           string `json:"id"`
	QueueCleared bool   `json:"queue_cleared"`
}

func clearQueue(store QueueStore, o *options) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r)
		if err != nil {
			writeInspectError(w, r, o.logger, "clearing queue", err)
			return
		}
		found, err := store.RetrieveEnrollments(r.Context(), &storage.EnrollmentQuery{IDs: []string{id}, Limit: 1})
		if err == nil && len(found) == 0 {
			err = fmt.Errorf("%w: %q", storage.ErrUnknownEnrollment, id)
		}
		if err != nil {
			writeInspectError(w, r, o.logger, "clearing queue", err)
			return
		}
		enrollID := &mdm.EnrollID{ID: id, ParentID: found[0].ParentID}
		if err := store.ClearQueue(&mdm.Request{Context: r.Context(), EnrollID: enrollID}); err != nil {
			writeInspectError(w, r, o.logger, "clearing queue", err)
			return
		}
		log.From(r.Context(), o.logger).Info("msg", "cleared queue", "id", id)
		mdmhttp.WriteJSON(w, http.StatusOK, ClearQueueResponse{ID: id, QueueCleared: true})
	}
}

// RemoveQueuedCommandResponse answers a command taken off a queue.
type RemoveQueuedCommandResponse struct {
	ID          string `json:"id"`
	CommandUUID string `json:"command_uuid"`
	Removed     bool   `json:"removed"`
}

// RemoveQueuedCommandHandler takes command {uuid} off the queue of
// enrollment {id} alone (DELETE): the device never gets it, other
// enrollments still do. An unknown enrollment, or a command not
// outstanding in its queue (never queued, answered or removed already),
// is 404; a malformed ID is 400.
func RemoveQueuedCommandHandler(store storage.QueuedCommandRemover, opts ...Option) http.Handler {
	o := newOptions(opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := pathID(r)
		if err != nil {
			writeInspectError(w, r, o.logger, "removing queued command", err)
			return
		}
		uuid := r.PathValue("uuid")
		if err := store.RemoveQueuedCommand(r.Context(), id, uuid); err != nil {
			writeInspectError(w, r, o.logger, "removing queued command", err)
			return
		}
		log.From(r.Context(), o.logger).Info("msg", "removed queued command", "id", id, "command_uuid", uuid)
		mdmhttp.WriteJSON(w, http.StatusOK, RemoveQueuedCommandResponse{ID: id, CommandUUID: uuid, Removed: true})
	})
}

// CommandResultJSON is one enrollment's answer to a command. Result is
// the raw report plist (base64 in JSON), absent with status_only.
type CommandResultJSON struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Result []byte `json:"result,omitempty"`
}

// CommandResultsResponse is a page of a command's results.
type CommandResultsResponse struct {
	CommandUUID string              `json:"command_uuid"`
	Results     []CommandResultJSON `json:"results"`
	NextCursor  string              `json:"next_cursor,omitempty"`
}

// CommandResultsHandler lists, in enrollment ID order, each enrollment's
// latest report on command {uuid}, a page at a time (cursor, limit);
// status_only=1 leaves out the raw reports. A command nobody answered,
// or an unknown one, has an empty list.
func CommandResultsHandler(store storage.CommandResultLister, opts ...Option) http.Handler {
	o := newOptions(opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uuid := r.PathValue("uuid")
		q := r.URL.Query()
		limit, err := pageLimit(q)
		if err != nil {
			writeInspectError(w, r, o.logger, "listing command results", err)
			return
		}
		statusOnly, err := boolParam(q, "status_only")
		if err != nil {
			writeInspectError(w, r, o.logger, "listing command results", err)
			return
		}
		found, err := store.RetrieveCommandResults(r.Context(), uuid, q.Get("cursor"), limit+1, statusOnly != nil && *statusOnly)
		if err != nil {
			writeInspectError(w, r, o.logger, "listing command results", err)
			return
		}
		found, next := page(found, limit, func(c storage.CommandResult) string { return c.ID })
		resp := CommandResultsResponse{CommandUUID: uuid, Results: make([]CommandResultJSON, 0, len(found)), NextCursor: next}
		for _, res := range found {
			resp.Results = append(resp.Results, CommandResultJSON{ID: res.ID, Status: res.Status, Result: res.Raw})
		}
		mdmhttp.WriteJSON(w, http.StatusOK, resp)
	})
}

// page cuts found, fetched with one item more than limit, to limit items
// and returns the cursor of the next page: the last item's, or "" when
// nothing follows.
func page[T any](found []T, limit int, cursor func(T) string) ([]T, string) {
	if len(found) <= limit {
		return found, ""
	}
	found = found[:limit]
	return found, cursor(found[limit-1])
}

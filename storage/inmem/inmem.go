// Package inmem is a volatile storage backend that keeps everything in
// process memory, for tests and trials. Everything is lost when the process
// ends. One read-write mutex guards the whole store.
package inmem

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/internal/memoutbox"
)

// Storage is an in-memory implementation of storage.AllStorage.
type Storage struct {
	mu sync.RWMutex
	// enrollments holds every channel that has sent a check-in, keyed by
	// enrollment ID.
	enrollments map[string]*enrollment
	// commands holds every command ever enqueued, by CommandUUID.
	commands map[string]*mdm.Command
	// results holds the latest report of each command, by enrollment ID
	// and CommandUUID.
	results   map[resultKey]result
	pushCerts map[string]*pushCert
	// certHashes maps a device-channel ID to its associated hashes, and
	// hashOwners a hash to the IDs it is associated with.
	certHashes map[string]map[string]time.Time
	hashOwners map[string]map[string]bool
	// seq numbers queue entries in enqueue order, across enrollments.
	seq uint64

	// challenges holds SCEP challenge keys and their expiry (see
	// scepchallenge.go), under a lock of their own.
	challengeMu sync.Mutex
	challenges  map[string]time.Time

	// outbox holds webhook events (see outbox.go), locked on its own.
	outbox *memoutbox.Outbox
}

type resultKey struct{ id, uuid string }

type result struct {
	status string
	raw    []byte
	at     time.Time // when stored
}

type enrollment struct {
	id       string
	parentID string // empty for device channels
	users    map[string]bool
	typ      string // channel type, from the latest TokenUpdate
	serial   string // device channels: from the latest Authenticate

	authenticate     []byte // device channels only
	identityCert     []byte // DER, of the latest Authenticate
	tokenUpdate      []byte
	userAuthenticate []byte
	userDigest       []byte
	push             *mdm.Push // nil until the first TokenUpdate
	unlockToken      []byte
	bootstrapToken   []byte
	enabled          bool
	tally            int
	lastSeen         time.Time

	// queue holds the outstanding commands in enqueue order: entries are
	// appended under the store lock, so the slice order is a total order
	// of enqueues, exact however close in time they were.
	queue []*queued
}

type queued struct {
	uuid        string
	seq         uint64
	at          time.Time // when enqueued
	notNowAt    time.Time
	notNowTally int
}

type pushCert struct {
	cert  tls.Certificate
	token string
}

// New returns an empty store.
func New() *Storage {
	return &Storage{
		enrollments: map[string]*enrollment{},
		commands:    map[string]*mdm.Command{},
		results:     map[resultKey]result{},
		pushCerts:   map[string]*pushCert{},
		certHashes:  map[string]map[string]time.Time{},
		hashOwners:  map[string]map[string]bool{},
		outbox:      memoutbox.New(),
	}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// requestID returns the validated enrollment ID and device-channel ID of r.
func requestID(r *mdm.Request) (id, deviceID string, err error) {
	if r == nil || r.EnrollID == nil || r.EnrollID.ID == "" {
		return "", "", mdm.ErrInvalidEnrollment
	}
	id = r.EnrollID.ID
	if err := mdm.ValidateEnrollmentID(id); err != nil {
		return "", "", err
	}
	deviceID, _, _ = strings.Cut(id, ":")
	return id, deviceID, nil
}

// enrollmentLocked returns the enrollment of id, creating it if create
// is set. s.mu must be held for writing when create is set.
func (s *Storage) enrollmentLocked(id string, create bool) *enrollment {
	e := s.enrollments[id]
	if e == nil && create {
		e = &enrollment{id: id, users: map[string]bool{}}
		if dev, _, ok := strings.Cut(id, ":"); ok {
			e.parentID = dev
			s.enrollmentLocked(dev, true).users[id] = true
		}
		s.enrollments[id] = e
	}
	return e
}

// withUsersLocked returns e and its user channels.
func (s *Storage) withUsersLocked(e *enrollment) []*enrollment {
	out := []*enrollment{e}
	for id := range e.users {
		out = append(out, s.enrollments[id])
	}
	return out
}

// storeCheckin runs update on the enrollment of r, creating it if
// needed, and marks it seen now.
func (s *Storage) storeCheckin(r *mdm.Request, update func(e *enrollment)) error {
	id, _, err := requestID(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.enrollmentLocked(id, true)
	update(e)
	e.lastSeen = time.Now()
	return nil
}

// StoreAuthenticate implements storage.CheckinStore.
func (s *Storage) StoreAuthenticate(r *mdm.Request, msg *mdm.Authenticate) error {
	return s.storeCheckin(r, func(e *enrollment) {
		e.authenticate = clone(msg.Raw)
		e.serial = msg.SerialNumber
		e.identityCert = nil
		if r.Certificate != nil {
			e.identityCert = clone(r.Certificate.Raw)
		}
		for _, c := range s.withUsersLocked(e) {
			c.queue = nil
			c.enabled, c.tally = false, 0
		}
	})
}

// StoreTokenUpdate implements storage.CheckinStore.
func (s *Storage) StoreTokenUpdate(r *mdm.Request, msg *mdm.TokenUpdate) error {
	return s.storeCheckin(r, func(e *enrollment) {
		e.tokenUpdate = clone(msg.Raw)
		e.push = &mdm.Push{Topic: msg.Topic, PushMagic: msg.PushMagic, Token: clone(msg.Token)}
		if len(msg.UnlockToken) > 0 {
			e.unlockToken = clone(msg.UnlockToken)
		}
		e.typ = r.EnrollID.Type.String()
		e.enabled = true
		e.tally++
	})
}

// StoreUserAuthenticate implements storage.CheckinStore.
func (s *Storage) StoreUserAuthenticate(r *mdm.Request, msg *mdm.UserAuthenticate) error {
	return s.storeCheckin(r, func(e *enrollment) {
		if msg.DigestResponse != "" {
			e.userDigest = clone(msg.Raw)
		} else {
			e.userAuthenticate = clone(msg.Raw)
		}
	})
}

// Disable implements storage.CheckinStore.
func (s *Storage) Disable(r *mdm.Request) error {
	id, deviceID, err := requestID(r)
	if err != nil {
		return err
	}
	if id != deviceID {
		return storage.ErrInvalidCheckOut
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.enrollments[id]; e != nil {
		for _, c := range s.withUsersLocked(e) {
			c.enabled, c.tally = false, 0
		}
	}
	return nil
}

// RetrieveTokenUpdateTally implements storage.TokenUpdateTallyStore.
func (s *Storage) RetrieveTokenUpdateTally(_ context.Context, id string) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.enrollments[id]; e != nil {
		return e.tally, nil
	}
	return 0, nil
}

// StoreCommandReport implements storage.CommandQueueStore.
func (s *Storage) StoreCommandReport(r *mdm.Request, report *mdm.CommandResults) error {
	id, _, err := requestID(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.enrollments[id]
	if e != nil {
		e.lastSeen = time.Now()
	}
	if report.Status == mdm.StatusIdle {
		return nil
	}
	i := -1
	if e != nil {
		i = indexOf(e.queue, report.CommandUUID)
	}
	if i < 0 {
		return fmt.Errorf("%w: %q", storage.ErrUnknownCommand, report.CommandUUID)
	}
	s.results[resultKey{id, report.CommandUUID}] = result{status: report.Status, raw: clone(report.Raw), at: time.Now()}
	if report.Status == mdm.StatusNotNow {
		q := e.queue[i]
		if q.notNowTally == 0 {
			q.notNowAt = time.Now()
		}
		q.notNowTally++
		return nil
	}
	e.queue = append(e.queue[:i:i], e.queue[i+1:]...)
	return nil
}

func indexOf(queue []*queued, uuid string) int {
	for i, q := range queue {
		if q.uuid == uuid {
			return i
		}
	}
	return -1
}

// RetrieveNextCommand implements storage.CommandQueueStore.
func (s *Storage) RetrieveNextCommand(r *mdm.Request, skipNotNow bool) (*mdm.Command, error) {
	id, _, err := requestID(r)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.enrollments[id]
	if e == nil {
		return nil, nil
	}
	for _, q := range e.queue {
		if skipNotNow && q.notNowTally > 0 {
			continue
		}
		c := s.commands[q.uuid]
		next := &mdm.Command{CommandUUID: c.CommandUUID, Raw: clone(c.Raw)}
		next.Command.RequestType = c.Command.RequestType
		return next, nil
	}
	return nil, nil
}

// ClearQueue implements storage.CommandQueueStore.
func (s *Storage) ClearQueue(r *mdm.Request) error {
	id, _, err := requestID(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.enrollments[id]; e != nil {
		for _, c := range s.withUsersLocked(e) {
			c.queue = nil
		}
	}
	return nil
}

// EnqueueCommand implements storage.CommandEnqueuer.
func (s *Storage) EnqueueCommand(ctx context.Context, ids []string, cmd *mdm.Command) (map[string]error, error) {
	if err := mdm.ValidateIDPart(cmd.CommandUUID); err != nil {
		return nil, fmt.Errorf("%w: CommandUUID: %w", mdm.ErrInvalidCommand, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.commands[cmd.CommandUUID]; ok {
		return nil, fmt.Errorf("%w: %q", storage.ErrDuplicateCommand, cmd.CommandUUID)
	}
	stored := &mdm.Command{CommandUUID: cmd.CommandUUID, Raw: clone(cmd.Raw)}
	stored.Command.RequestType = cmd.Command.RequestType
	s.commands[cmd.CommandUUID] = stored

	var errs map[string]error
	now := time.Now()
	enqueued := 0
	for _, id := range ids {
		e := s.enrollments[id]
		err := mdm.ValidateEnrollmentID(id)
		switch {
		case err != nil:
		case e == nil || e.push == nil:
			err = fmt.Errorf("%w: %q", storage.ErrUnknownEnrollment, id)
		case indexOf(e.queue, cmd.CommandUUID) >= 0:
			// The same ID twice in one call: queued once.
		default:
			s.seq++
			e.queue = append(e.queue, &queued{uuid: cmd.CommandUUID, seq: s.seq, at: now})
			enqueued++
		}
		if err != nil {
			if errs == nil {
				errs = map[string]error{}
			}
			errs[id] = err
		}
	}
	if enqueued == 0 {
		delete(s.commands, cmd.CommandUUID) // nothing enqueued: nothing kept
	}
	return errs, nil
}

// StoreBootstrapToken implements storage.BootstrapTokenStore.
func (s *Storage) StoreBootstrapToken(r *mdm.Request, msg *mdm.SetBootstrapToken) error {
	_, deviceID, err := requestID(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.enrollments[deviceID]
	if e == nil {
		return fmt.Errorf("%w: %s", storage.ErrUnknownEnrollment, deviceID)
	}
	e.bootstrapToken = clone(msg.BootstrapToken.BootstrapToken)
	if len(e.bootstrapToken) == 0 {
		e.bootstrapToken = nil
	}
	return nil
}

// RetrieveBootstrapToken implements storage.BootstrapTokenStore.
func (s *Storage) RetrieveBootstrapToken(r *mdm.Request, _ *mdm.GetBootstrapToken) (*mdm.BootstrapToken, error) {
	_, deviceID, err := requestID(r)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.enrollments[deviceID]
	if e == nil || e.bootstrapToken == nil {
		return nil, nil
	}
	return &mdm.BootstrapToken{BootstrapToken: clone(e.bootstrapToken)}, nil
}

// RetrievePushInfo implements storage.PushStore.
func (s *Storage) RetrievePushInfo(_ context.Context, ids []string) (map[string]*mdm.Push, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]*mdm.Push, len(ids))
	for _, id := range ids {
		if e := s.enrollments[id]; e != nil && e.push != nil {
			p := *e.push
			p.Token = clone(p.Token)
			out[id] = &p
		}
	}
	return out, nil
}

// StorePushCert implements storage.PushCertStore.
func (s *Storage) StorePushCert(_ context.Context, pemCert, pemKey []byte) error {
	cert, topic, err := cryptoutil.PushKeyPair(pemCert, pemKey)
	if err != nil {
		return err
	}
	h := sha256.New()
	h.Write(pemCert)
	h.Write(pemKey)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushCerts[topic] = &pushCert{cert: cert, token: hex.EncodeToString(h.Sum(nil))}
	return nil
}

// RetrievePushCert implements storage.PushCertStore.
func (s *Storage) RetrievePushCert(_ context.Context, topic string) (*tls.Certificate, string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	pc := s.pushCerts[topic]
	if pc == nil {
		return nil, "", fmt.Errorf("%w: %q", storage.ErrNoPushCert, topic)
	}
	cert := pc.cert
	return &cert, pc.token, nil
}

// RetrievePushCertTopics implements storage.PushCertLister.
func (s *Storage) RetrievePushCertTopics(context.Context) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.pushCerts)), nil
}

// IsPushCertStale implements storage.PushCertStore.
func (s *Storage) IsPushCertStale(_ context.Context, topic, staleToken string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	pc := s.pushCerts[topic]
	if pc == nil {
		return false, fmt.Errorf("%w: %q", storage.ErrNoPushCert, topic)
	}
	return pc.token != staleToken, nil
}

// HasCertHash implements storage.CertAuthStore.
func (s *Storage) HasCertHash(_ *mdm.Request, hash string) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.hashOwners[hash]) > 0, nil
}

// EnrollmentHasCertHash implements storage.CertAuthStore.
func (s *Storage) EnrollmentHasCertHash(r *mdm.Request, _ string) (bool, error) {
	_, deviceID, err := requestID(r)
	if err != nil {
		return false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.certHashes[deviceID]) > 0, nil
}

// IsCertHashAssociated implements storage.CertAuthStore.
func (s *Storage) IsCertHashAssociated(r *mdm.Request, hash string) (bool, error) {
	_, deviceID, err := requestID(r)
	if err != nil {
		return false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.certHashes[deviceID][hash]
	return ok, nil
}

// AssociateCertHash implements storage.CertAuthStore.
func (s *Storage) AssociateCertHash(r *mdm.Request, hash string, certNotAfter time.Time) error {
	_, deviceID, err := requestID(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for owner := range s.hashOwners[hash] {
		if owner != deviceID {
			return fmt.Errorf("%w: %s", storage.ErrCertHashTaken, hash)
		}
	}
	if s.certHashes[deviceID] == nil {
		s.certHashes[deviceID] = map[string]time.Time{}
	}
	s.certHashes[deviceID][hash] = certNotAfter
	if s.hashOwners[hash] == nil {
		s.hashOwners[hash] = map[string]bool{}
	}
	s.hashOwners[hash][deviceID] = true
	return nil
}

// RetrieveEnrollmentIDByCertHash implements storage.CertAuthRetriever.
func (s *Storage) RetrieveEnrollmentIDByCertHash(_ context.Context, hash string) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var found string
	for id := range s.hashOwners[hash] {
		if found == "" || id < found {
			found = id
		}
	}
	if found == "" {
		return "", fmt.Errorf("%w: no enrollment has certificate hash %q", storage.ErrUnknownEnrollment, hash)
	}
	return found, nil
}

// RetrieveMigrationCheckins implements storage.MigrationStore. Devices
// come in ID order, each followed by its users in ID order; disabled
// channels and devices that never sent a TokenUpdate are left out.
func (s *Storage) RetrieveMigrationCheckins(ctx context.Context, c chan<- any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	var raws [][]byte
	var devices []*enrollment
	for _, e := range s.enrollments {
		if e.parentID == "" {
			devices = append(devices, e)
		}
	}
	sort.Slice(devices, func(i, j int) bool { return devices[i].id < devices[j].id })
	for _, d := range devices {
		if !d.enabled || d.authenticate == nil || d.tokenUpdate == nil {
			continue
		}
		raws = append(raws, d.authenticate, d.tokenUpdate)
		users := make([]string, 0, len(d.users))
		for id := range d.users {
			users = append(users, id)
		}
		sort.Strings(users)
		for _, id := range users {
			if u := s.enrollments[id]; u.enabled && u.tokenUpdate != nil {
				raws = append(raws, u.tokenUpdate)
			}
		}
	}
	s.mu.RUnlock()

	// The raw slices are never modified in place, only replaced, so they
	// may be read after unlocking.
	for _, raw := range raws {
		msg, err := mdm.DecodeCheckin(clone(raw))
		if err != nil {
			return fmt.Errorf("decoding stored check-in: %w", err)
		}
		select {
		case c <- msg:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

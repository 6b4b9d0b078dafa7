// Package file is the default storage backend: plain files in a directory
// tree, with no dependencies beyond the standard library.
//
// Layout under the storage directory:
//
//	format                         layout marker ("nanomdm-file-storage 2")
//	enrollments/<device ID>/       one directory per device channel
//	    authenticate.plist         raw Authenticate
//	    identity_cert.pem          identity certificate of the Authenticate
//	    token_update.plist         raw latest TokenUpdate
//	    enrollment.json            enabled, TokenUpdate tally, push data
//	    unlock_token               raw UnlockToken
//	    bootstrap_token            raw escrowed bootstrap token
//	    user_authenticate.plist    raw UserAuthenticate (and _digest)
//	    last_seen                  empty; its mtime is the last-seen time
//	    queue                      the enrollment's queued commands, in order
//	    results.log                raw reports (final and NotNow), appended
//	    users/<user part>/         a user channel ("UDID:UserID" and the
//	                               like): the same files, without users/
//	commands/<CommandUUID>         raw command, written once
//	push_certs/<topic>.pem         certificate and key, mode 0600
//	cert_auth/<device ID>/<hash>   identity certificate hash association
//	cert_hashes/<hash>             marks a hash associated with any device;
//	                               holds the device ID it belongs to
//	outbox/<event ID>              one webhook event waiting for delivery
//
// A user channel lives inside its device's directory, so each path element
// stays within the 255-byte limit of file names and a device's cascade
// (Authenticate, Disable, ClearQueue) finds its users without a scan. IDs
// are validated again here before they become path elements.
//
// Every file is replaced atomically: written to a temporary file (named
// ".tmp-…") in the same directory, then renamed over the old one, so a
// crash never leaves a torn file and readers never see one. Temporary files
// a crash leaves behind are never read. WithSync adds fsync for durability
// across power loss.
//
// The queue file lists an enrollment's commands in enqueue order, which is
// the order they are sent (commands carry no priority), so the order is
// exact for commands enqueued in the same instant and survives restarts.
// It also holds each command's NotNow count and time and when it was
// enqueued. A final report takes a command off the queue by a done line
// appended to the queue file, and the report itself is appended to
// results.log, so the command loop creates no file; the queue file drops
// done commands when it is next rewritten. CommandUUIDs are never reused.
// Format 1 kept reports in a file each (results/, notnow/); New moves them
// into results.log once (legacy.go).
//
// Writers of one device and its users are serialized by an in-process
// lock, so one storage directory must be used by one process at a time.
package file

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage/internal/memoutbox"
)

const (
	formatFile    = "format"
	formatVersion = "nanomdm-file-storage 2\n"

	enrollmentsDir = "enrollments"
	commandsDir    = "commands"
	pushCertsDir   = "push_certs"
	certAuthDir    = "cert_auth"
	certHashesDir  = "cert_hashes"

	usersDir           = "users"
	authenticateFile   = "authenticate.plist"
	identityCertFile   = "identity_cert.pem"
	tokenUpdateFile    = "token_update.plist"
	userAuthFile       = "user_authenticate.plist"
	userAuthDigestFile = "user_authenticate_digest.plist"
	stateFile          = "enrollment.json"
	unlockTokenFile    = "unlock_token"
	bootstrapTokenFile = "bootstrap_token"
	lastSeenFile       = "last_seen"
	queueFile          = "queue"
	tempPrefix         = ".tmp-"
	lockStripes        = 256
)

const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600
)

// Storage is a file-based implementation of storage.AllStorage.
type Storage struct {
	dir   string
	sync  bool
	now   func() time.Time
	locks [lockStripes]sync.Mutex
	// challengeStores counts stored SCEP challenges (scepchallenge.go).
	challengeStores atomic.Uint64
	// outbox indexes the webhook events spooled in outbox/ (outbox.go).
	outbox *memoutbox.Outbox
	// A result log longer than logCompactAt is cut to about its newest
	// logKeep bytes (resultlog.go).
	logCompactAt, logKeep int64
}

// Option configures a Storage.
type Option func(*Storage)

// WithSync makes every write fsync the file and its directory before it
// counts as done, so that it survives power loss, not only a crash of the
// process. It is off by default: it adds disk latency to every request.
func WithSync(on bool) Option {
	return func(s *Storage) { s.sync = on }
}

// ErrUnknownLayout means the storage directory holds files this backend
// did not write, such as data of an older file storage.
var ErrUnknownLayout = errors.New("directory is not a nanomdm file storage")

// New opens the storage in dir, creating it (mode 0700) if missing. A
// non-empty directory that this backend did not create is refused with
// ErrUnknownLayout rather than silently ignored.
func New(dir string, opts ...Option) (*Storage, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolving storage directory: %w", err)
	}
	s := &Storage{dir: abs, now: time.Now, logCompactAt: defaultLogCompactAt, logKeep: defaultLogKeep}
	for _, opt := range opts {
		opt(s)
	}
	if err := os.MkdirAll(abs, dirMode); err != nil {
		return nil, fmt.Errorf("creating storage directory: %w", err)
	}
	legacy, err := s.checkFormat()
	if err != nil {
		return nil, err
	}
	for _, sub := range []string{enrollmentsDir, commandsDir, pushCertsDir, certAuthDir, certHashesDir} {
		if err := os.Mkdir(filepath.Join(abs, sub), dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("creating storage directory: %w", err)
		}
	}
	if legacy {
		if err := s.migrateFormat1(); err != nil {
			return nil, fmt.Errorf("moving reports of format 1 into result logs: %w", err)
		}
	}
	if err := s.loadOutbox(); err != nil {
		return nil, err
	}
	return s, nil
}

// checkFormat accepts a directory with our marker, or an empty one (where
// it writes the marker). It reports whether the directory is of format 1,
// to be migrated. A crash between creating the marker and the
// sub-directories is harmless: New creates those every time.
func (s *Storage) checkFormat() (legacy bool, err error) {
	b, err := os.ReadFile(filepath.Join(s.dir, formatFile))
	switch {
	case err == nil && string(b) == formatVersion:
		return false, nil
	case err == nil && string(b) == formatVersion1:
		return true, nil
	case err == nil:
		return false, fmt.Errorf("%w: %s: unsupported format %q", ErrUnknownLayout, s.dir, strings.TrimSpace(string(b)))
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("reading storage format: %w", err)
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return false, fmt.Errorf("reading storage directory: %w", err)
	}
	for _, e := range entries {
		// A file system mounted here may bring lost+found.
		if !strings.HasPrefix(e.Name(), tempPrefix) && e.Name() != "lost+found" {
			return false, fmt.Errorf("%w: %s is not empty and has no %q file", ErrUnknownLayout, s.dir, formatFile)
		}
	}
	return false, s.writeFile(filepath.Join(s.dir, formatFile), []byte(formatVersion))
}

// lock locks the stripe of a device and its user channels and returns
// the unlock function.
func (s *Storage) lock(deviceID string) func() {
	// FNV-1a, inline to spare an allocation per request.
	h := uint32(2166136261)
	for i := 0; i < len(deviceID); i++ {
		h = (h ^ uint32(deviceID[i])) * 16777619
	}
	m := &s.locks[h%lockStripes]
	m.Lock()
	return m.Unlock
}

// channel is a validated enrollment ID and where its files are.
type channel struct {
	id       string
	deviceID string
	dir      string
}

func (c channel) isUser() bool { return c.id != c.deviceID }

func (c channel) path(name string) string { return filepath.Join(c.dir, name) }

// channel validates id and returns its directory. The checks repeat those
// of the HTTP layer on purpose: nothing that could leave the storage
// directory (separators, "..", control characters, over-long names) is
// ever joined into a path.
func (s *Storage) channel(id string) (channel, error) {
	if err := mdm.ValidateEnrollmentID(id); err != nil {
		return channel{}, err
	}
	deviceID, user, isUser := strings.Cut(id, ":")
	dir := filepath.Join(s.dir, enrollmentsDir, deviceID)
	if isUser {
		dir = filepath.Join(dir, usersDir, user)
	}
	if err := s.within(dir, enrollmentsDir); err != nil {
		return channel{}, err
	}
	return channel{id: id, deviceID: deviceID, dir: dir}, nil
}

// requestChannel returns the channel of a request.
func (s *Storage) requestChannel(r *mdm.Request) (channel, error) {
	if r == nil || r.EnrollID == nil || r.EnrollID.ID == "" {
		return channel{}, mdm.ErrInvalidEnrollment
	}
	return s.channel(r.EnrollID.ID)
}

// within checks that path is strictly inside the sub-directory sub of the
// storage directory.
func (s *Storage) within(path, sub string) error {
	root := filepath.Join(s.dir, sub) + string(filepath.Separator)
	if filepath.Clean(path) != path || !strings.HasPrefix(path, root) {
		return fmt.Errorf("%w: path escapes storage directory", mdm.ErrInvalidID)
	}
	return nil
}

// safeName validates a file name that comes from outside (a CommandUUID,
// a topic, a certificate hash) and returns its path in sub.
func (s *Storage) safeName(sub, name string) (string, error) {
	if err := mdm.ValidateIDPart(name); err != nil {
		return "", err
	}
	if strings.HasPrefix(name, tempPrefix) {
		return "", fmt.Errorf("%w: %q", mdm.ErrInvalidID, name)
	}
	p := filepath.Join(s.dir, sub, name)
	if err := s.within(p, sub); err != nil {
		return "", err
	}
	return p, nil
}

// writeFile atomically replaces path with data.
func (s *Storage) writeFile(path string, data ...[]byte) error {
	tmp, err := s.writeTemp(path, data...)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return s.syncDir(filepath.Dir(path))
}

// createFile atomically creates path with data; if path exists it returns
// an error wrapping fs.ErrExist and leaves it as it was.
func (s *Storage) createFile(path string, data []byte) error {
	tmp, err := s.writeTemp(path, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	return s.syncDir(filepath.Dir(path))
}

// writeTemp writes data, its parts one after the other, to a new
// temporary file beside path and returns its name.
func (s *Storage) writeTemp(path string, data ...[]byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), tempPrefix+"*")
	if err != nil {
		return "", err
	}
	for _, part := range data {
		if _, err = f.Write(part); err != nil {
			break
		}
	}
	if err == nil && s.sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func (s *Storage) syncDir(dir string) error {
	if !s.sync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeInDir is writeFile that creates the parent directory if missing.
func (s *Storage) writeInDir(path string, data []byte) error {
	err := s.writeFile(path, data)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), dirMode); err == nil {
			err = s.writeFile(path, data)
		}
	}
	return err
}

// readFile reads path; a missing file is nil data and no error.
func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// removeFile removes path; a missing file is no error.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// subdirs returns the names of the directories in dir, sorted; a missing
// dir has none. Temporary files are never directories.
func subdirs(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// withUsers returns c and, for a device channel, its user channels.
func (s *Storage) withUsers(c channel) ([]channel, error) {
	out := []channel{c}
	if c.isUser() {
		return out, nil
	}
	users, err := subdirs(c.path(usersDir))
	if err != nil {
		return nil, fmt.Errorf("listing user channels of %s: %w", c.id, err)
	}
	for _, u := range users {
		uc, err := s.channel(c.deviceID + ":" + u)
		if err != nil {
			continue // not ours: never created by this backend
		}
		out = append(out, uc)
	}
	return out, nil
}

// touch sets the last-seen time of c, if c has a directory.
func (s *Storage) touch(c channel) error {
	now := s.now()
	p := c.path(lastSeenFile)
	err := os.Chtimes(p, now, now)
	if errors.Is(err, fs.ErrNotExist) {
		// An empty file cannot be torn; no need for a rename.
		err = os.WriteFile(p, nil, fileMode)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // unknown enrollment
		}
	}
	return err
}

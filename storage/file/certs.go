package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// pushCertPath returns the file of a topic's certificate and key.
func (s *Storage) pushCertPath(topic string) (string, error) {
	if len(topic)+len(".pem") > mdm.MaxIDLength {
		return "", fmt.Errorf("%w: topic too long", mdm.ErrInvalidID)
	}
	return s.safeName(pushCertsDir, topic+".pem")
}

// StorePushCert implements storage.PushCertStore. Certificate and key are
// kept together in one file, so they are always replaced together.
func (s *Storage) StorePushCert(_ context.Context, pemCert, pemKey []byte) error {
	_, topic, err := cryptoutil.PushKeyPair(pemCert, pemKey)
	if err != nil {
		return err
	}
	p, err := s.pushCertPath(topic)
	if err != nil {
		return fmt.Errorf("push certificate topic %q: %w", topic, err)
	}
	var data []byte
	data = append(data, bytes.TrimSpace(pemCert)...)
	data = append(data, '\n')
	data = append(data, bytes.TrimSpace(pemKey)...)
	data = append(data, '\n')
	if err := s.writeFile(p, data); err != nil {
		return fmt.Errorf("storing push certificate for topic %q: %w", topic, err)
	}
	return nil
}

// readPushCert returns the stored certificate-and-key file of topic and
// its stale token, the hex SHA-256 of the file.
func (s *Storage) readPushCert(topic string) ([]byte, string, error) {
	p, err := s.pushCertPath(topic)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %q: %w", storage.ErrNoPushCert, topic, err)
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("%w: %q", storage.ErrNoPushCert, topic)
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading push certificate for topic %q: %w", topic, err)
	}
	sum := sha256.Sum256(data)
	return data, hex.EncodeToString(sum[:]), nil
}

// RetrievePushCert implements storage.PushCertStore.
func (s *Storage) RetrievePushCert(_ context.Context, topic string) (*tls.Certificate, string, error) {
	data, token, err := s.readPushCert(topic)
	if err != nil {
		return nil, "", err
	}
	cert, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil, "", fmt.Errorf("parsing push certificate for topic %q: %w", topic, err)
	}
	return &cert, token, nil
}

// RetrievePushCertTopics implements storage.PushCertLister: the names of
// the push certificate files, less ".pem". ReadDir sorts them bytewise.
func (s *Storage) RetrievePushCertTopics(context.Context) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, pushCertsDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing push certificates: %w", err)
	}
	var topics []string
	for _, e := range entries {
		if topic, ok := strings.CutSuffix(e.Name(), ".pem"); ok && e.Type().IsRegular() {
			topics = append(topics, topic)
		}
	}
	return topics, nil
}

// IsPushCertStale implements storage.PushCertStore.
func (s *Storage) IsPushCertStale(_ context.Context, topic, staleToken string) (bool, error) {
	_, token, err := s.readPushCert(topic)
	if err != nil {
		return false, err
	}
	return token != staleToken, nil
}

// certHashPaths returns the association file of hash for the device of r
// and the marker file of hash. The device ID was validated as an
// enrollment ID and the hash is alphanumeric, so both are safe names.
func (s *Storage) certHashPaths(r *mdm.Request, hash string) (assoc, marker string, err error) {
	c, err := s.requestChannel(r)
	if err != nil {
		return "", "", err
	}
	if !isHashName(hash) {
		return "", "", fmt.Errorf("invalid certificate hash %q", hash)
	}
	assoc = filepath.Join(s.dir, certAuthDir, c.deviceID, hash)
	return assoc, filepath.Join(s.dir, certHashesDir, hash), nil
}

// isHashName reports whether hash is a hex-like digest, safe as a file
// name and never mistaken for a temporary file.
func isHashName(hash string) bool {
	if hash == "" || len(hash) > mdm.MaxIDLength {
		return false
	}
	for i := 0; i < len(hash); i++ {
		switch c := hash[i]; {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		default:
			return false
		}
	}
	return true
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// HasCertHash implements storage.CertAuthStore.
// r needs no enrollment.
func (s *Storage) HasCertHash(_ *mdm.Request, hash string) (bool, error) {
	if !isHashName(hash) {
		return false, fmt.Errorf("invalid certificate hash %q", hash)
	}
	return exists(filepath.Join(s.dir, certHashesDir, hash))
}

// EnrollmentHasCertHash implements storage.CertAuthStore.
func (s *Storage) EnrollmentHasCertHash(r *mdm.Request, _ string) (bool, error) {
	c, err := s.requestChannel(r)
	if err != nil {
		return false, err
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, certAuthDir, c.deviceID))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if isHashName(e.Name()) {
			return true, nil
		}
	}
	return false, nil
}

// IsCertHashAssociated implements storage.CertAuthStore.
func (s *Storage) IsCertHashAssociated(r *mdm.Request, hash string) (bool, error) {
	assoc, _, err := s.certHashPaths(r, hash)
	if err != nil {
		return false, err
	}
	return exists(assoc)
}

// AssociateCertHash implements storage.CertAuthStore. The association is
// written before the marker: after a crash between the two, the device is
// still authorized and the hash merely looks unused elsewhere. The marker
// holds the device ID, so that RetrieveEnrollmentIDByCertHash needs one
// read; of several devices sharing a hash it keeps the smallest ID.
func (s *Storage) AssociateCertHash(r *mdm.Request, hash string, certNotAfter time.Time) error {
	assoc, marker, err := s.certHashPaths(r, hash)
	if err != nil {
		return err
	}
	deviceID := filepath.Base(filepath.Dir(assoc))
	// The hash's stripe lock makes check and write one step (the
	// directory belongs to one process).
	defer s.lock(certHashesDir + "/" + hash)()
	mine, err := exists(assoc)
	if err != nil {
		return fmt.Errorf("associating certificate hash: %w", err)
	}
	owner, err := readFile(marker)
	if err != nil {
		return fmt.Errorf("associating certificate hash: %w", err)
	}
	if owner != nil && !mine {
		return fmt.Errorf("%w: %s", storage.ErrCertHashTaken, hash)
	}
	notAfter := []byte(certNotAfter.UTC().Format(time.RFC3339) + "\n")
	if err := s.writeInDir(assoc, notAfter); err != nil {
		return fmt.Errorf("associating certificate hash: %w", err)
	}
	if o := string(bytes.TrimSpace(owner)); o != "" && o <= deviceID {
		return nil
	}
	if err := s.writeFile(marker, []byte(deviceID+"\n")); err != nil {
		return fmt.Errorf("associating certificate hash: %w", err)
	}
	return nil
}

// RetrieveEnrollmentIDByCertHash implements storage.CertAuthRetriever
// with one read of the hash's marker. A marker written before markers
// named their device is empty: then the associations are searched.
func (s *Storage) RetrieveEnrollmentIDByCertHash(_ context.Context, hash string) (string, error) {
	if !isHashName(hash) {
		return "", fmt.Errorf("%w: invalid certificate hash %q", storage.ErrUnknownEnrollment, hash)
	}
	owner, err := readFile(filepath.Join(s.dir, certHashesDir, hash))
	if err != nil {
		return "", fmt.Errorf("reading certificate hash marker: %w", err)
	}
	if owner == nil {
		return "", fmt.Errorf("%w: no enrollment has certificate hash %q", storage.ErrUnknownEnrollment, hash)
	}
	if id := string(bytes.TrimSpace(owner)); id != "" {
		if mdm.ValidateEnrollmentID(id) != nil {
			return "", fmt.Errorf("certificate hash marker %s holds an invalid ID", hash)
		}
		return id, nil
	}
	devices, err := subdirs(filepath.Join(s.dir, certAuthDir))
	if err != nil {
		return "", fmt.Errorf("listing certificate associations: %w", err)
	}
	for _, id := range devices { // sorted: the first found is the smallest
		ok, err := exists(filepath.Join(s.dir, certAuthDir, id, hash))
		if err != nil {
			return "", fmt.Errorf("reading certificate association: %w", err)
		}
		if ok {
			return id, nil
		}
	}
	return "", fmt.Errorf("%w: no enrollment has certificate hash %q", storage.ErrUnknownEnrollment, hash)
}

package file

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// RetrieveIdentityCert implements storage.EnrollmentDetailer: the
// identity_cert.pem of the device.
func (s *Storage) RetrieveIdentityCert(ctx context.Context, id string) (*x509.Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	deviceID, _, _ := strings.Cut(id, ":")
	dev, err := s.channel(deviceID)
	if err != nil {
		return nil, nil // an invalid ID names no enrollment
	}
	b, err := readFile(dev.path(identityCertFile))
	if err != nil || b == nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("reading identity certificate of %s: no PEM block", deviceID)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing identity certificate of %s: %w", deviceID, err)
	}
	return cert, nil
}

// reportFile is a stored report of one command.
type reportFile struct {
	uuid, path string
	at         time.Time
}

// reportFiles lists the reports in dir (results/ or notnow/).
func reportFiles(dir string) ([]reportFile, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]reportFile, 0, len(entries))
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // replaced since the listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, reportFile{uuid: e.Name(), path: filepath.Join(dir, e.Name()), at: fi.ModTime().UTC().Truncate(time.Microsecond)})
	}
	return out, nil
}

// RetrieveRecentResults implements storage.EnrollmentDetailer: the
// newest files of the channel's results/ and notnow/ (a final report
// wins over a NotNow one of the same command), by modification time. It
// lists both directories: a channel's whole history.
func (s *Storage) RetrieveRecentResults(ctx context.Context, id string, n int) ([]storage.RecentResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n <= 0 {
		n = storage.DefaultInspectLimit
	}
	c, err := s.channel(id)
	if err != nil {
		return nil, nil // an invalid ID names no enrollment
	}
	final, err := reportFiles(filepath.Join(c.dir, resultsDir))
	if err != nil {
		return nil, fmt.Errorf("listing results of %s: %w", id, err)
	}
	notNow, err := reportFiles(filepath.Join(c.dir, notNowDir))
	if err != nil {
		return nil, fmt.Errorf("listing results of %s: %w", id, err)
	}
	files := final
	for _, f := range notNow {
		if !slices.ContainsFunc(final, func(r reportFile) bool { return r.uuid == f.uuid }) {
			files = append(files, f)
		}
	}
	slices.SortFunc(files, func(a, b reportFile) int {
		return cmp.Or(b.at.Compare(a.at), strings.Compare(a.uuid, b.uuid))
	})
	var out []storage.RecentResult
	for _, f := range files[:min(len(files), n)] {
		raw, err := readFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("reading result of %s for %s: %w", f.uuid, id, err)
		}
		if raw == nil {
			continue // a NotNow report superseded since the listing
		}
		report, err := mdm.DecodeCommandResults(raw)
		if err != nil {
			return nil, fmt.Errorf("decoding result of %s for %s: %w", f.uuid, id, err)
		}
		r := storage.RecentResult{CommandUUID: f.uuid, Status: report.Status, At: f.at, Raw: raw}
		if cmd, err := readFile(filepath.Join(s.dir, commandsDir, f.uuid)); err == nil && cmd != nil {
			if decoded, err := mdm.DecodeCommand(cmd); err == nil {
				r.RequestType = decoded.Command.RequestType
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// RemoveQueuedCommand implements storage.QueuedCommandRemover.
func (s *Storage) RemoveQueuedCommand(ctx context.Context, id, uuid string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := s.channel(id)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", storage.ErrUnknownEnrollment, id, err)
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
	if q, err = pending(c, q); err != nil {
		return err
	}
	i := indexOf(q, uuid)
	if i < 0 {
		return fmt.Errorf("%w: %q", storage.ErrUnknownCommand, uuid)
	}
	if err := s.writeQueue(c, append(q[:i:i], q[i+1:]...)); err != nil {
		return fmt.Errorf("removing %s from queue of %s: %w", uuid, id, err)
	}
	return nil
}

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

// RetrieveRecentResults implements storage.EnrollmentDetailer: the
// latest report of each command in the channel's result log (a final
// report wins over a NotNow one), newest first. The log keeps no time per
// record: At is when the log was last written, for every result.
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
	path := c.path(resultLogFile)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading results of %s: %w", id, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading results of %s: %w", id, err)
	}
	// latest[uuid] is the record shown for the command; order lists the
	// commands by the position of that record.
	type pick struct {
		rec resultRecord
		pos int
	}
	latest := map[string]pick{}
	pos := 0
	scanRecords(b, func(r resultRecord) bool {
		pos++
		if p, ok := latest[r.uuid]; ok && p.rec.kind == kindFinal && r.kind != kindFinal {
			return true
		}
		latest[r.uuid] = pick{r, pos}
		return true
	})
	picks := make([]pick, 0, len(latest))
	for _, p := range latest {
		picks = append(picks, p)
	}
	slices.SortFunc(picks, func(a, b pick) int { return cmp.Compare(b.pos, a.pos) })
	at := fi.ModTime().UTC().Truncate(time.Microsecond)
	var out []storage.RecentResult
	for _, p := range picks[:min(len(picks), n)] {
		report, err := mdm.DecodeCommandResults(p.rec.raw)
		if err != nil {
			return nil, fmt.Errorf("decoding result of %s for %s: %w", p.rec.uuid, id, err)
		}
		r := storage.RecentResult{CommandUUID: p.rec.uuid, Status: report.Status, At: at, Raw: p.rec.raw}
		if cmd, err := readFile(filepath.Join(s.dir, commandsDir, p.rec.uuid)); err == nil && cmd != nil {
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
	q = pending(q)
	i := indexOf(q, uuid)
	if i < 0 {
		return fmt.Errorf("%w: %q", storage.ErrUnknownCommand, uuid)
	}
	if err := s.writeQueue(c, append(q[:i:i], q[i+1:]...)); err != nil {
		return fmt.Errorf("removing %s from queue of %s: %w", uuid, id, err)
	}
	return nil
}

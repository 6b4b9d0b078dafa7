package certauth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/service"
	"github.com/nanomdm/nanomdm/storage"
)

// fakeStore is a CertAuthStore over a map, keyed by device-channel ID as
// the interface documents. err, when set, fails every call.
type fakeStore struct {
	mu     sync.Mutex
	owners map[string]map[string]bool // hash -> device IDs
	err    error
}

func newFakeStore() *fakeStore { return &fakeStore{owners: map[string]map[string]bool{}} }

func deviceID(r *mdm.Request) string {
	if r.EnrollID.ParentID != "" {
		return r.EnrollID.ParentID
	}
	return r.EnrollID.ID
}

func (s *fakeStore) HasCertHash(_ *mdm.Request, hash string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.owners[hash]) > 0, s.err
}

func (s *fakeStore) EnrollmentHasCertHash(r *mdm.Request, _ string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ids := range s.owners {
		if ids[deviceID(r)] {
			return true, s.err
		}
	}
	return false, s.err
}

func (s *fakeStore) IsCertHashAssociated(r *mdm.Request, hash string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.owners[hash][deviceID(r)], s.err
}

func (s *fakeStore) AssociateCertHash(r *mdm.Request, hash string, _ time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	for id := range s.owners[hash] {
		if id != deviceID(r) {
			return storage.ErrCertHashTaken
		}
	}
	if s.owners[hash] == nil {
		s.owners[hash] = map[string]bool{}
	}
	s.owners[hash][deviceID(r)] = true
	return nil
}

// hashesOf returns the hashes bound to device id, sorted.
func (s *fakeStore) hashesOf(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hs []string
	for h, ids := range s.owners {
		if ids[id] {
			hs = append(hs, h)
		}
	}
	sort.Strings(hs)
	return hs
}

// recorder is the next service; it counts the calls that reach it and
// keeps the last message it was handed.
type recorder struct {
	mu    sync.Mutex
	calls int
	last  any
}

func (n *recorder) count() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls
}

// Checkin answers with the message's type name.
func (n *recorder) Checkin(_ *mdm.Request, msg any) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls++
	n.last = msg
	return []byte(mdm.MessageTypeOf(msg)), nil
}

func (n *recorder) CommandAndReportResults(*mdm.Request, *mdm.CommandResults) (*mdm.Command, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls++
	return nil, nil
}

var _ service.CheckinAndCommandService = (*recorder)(nil)

// authenticate sends an Authenticate through c.
func authenticate(c *CertAuth, r *mdm.Request) error {
	_, err := c.Checkin(r, &mdm.Authenticate{})
	return err
}

// certs issues n identity certificates from one CA.
func certs(t *testing.T, n int) []*x509.Certificate {
	t.Helper()
	ca, err := simulator.NewCA("certauth test CA")
	if err != nil {
		t.Fatalf("creating CA: %v", err)
	}
	var cs []*x509.Certificate
	for i := 0; i < n; i++ {
		id, err := ca.Issue(fmt.Sprintf("device %d", i))
		if err != nil {
			t.Fatalf("issuing identity: %v", err)
		}
		cs = append(cs, id.Cert)
	}
	return cs
}

func device(udid string, cert *x509.Certificate) *mdm.Request {
	return &mdm.Request{Context: context.Background(), Certificate: cert,
		EnrollID: &mdm.EnrollID{Type: mdm.Device, ID: udid}}
}

func user(udid, userID string, cert *x509.Certificate) *mdm.Request {
	return &mdm.Request{Context: context.Background(), Certificate: cert,
		EnrollID: &mdm.EnrollID{Type: mdm.User, ID: udid + ":" + userID, ParentID: udid}}
}

// requests is one request of every kind but Authenticate: every other
// check-in message type, a message of no check-in type (certauth checks
// it like any other and leaves its refusal to the core service), and a
// command report.
var requests = func() []request {
	var rqs []request
	for _, msg := range []any{&mdm.TokenUpdate{}, &mdm.CheckOut{}, &mdm.UserAuthenticate{},
		&mdm.SetBootstrapToken{}, &mdm.GetBootstrapToken{}, &mdm.DeclarativeManagement{},
		&mdm.GetToken{}, &struct{ MessageType string }{"Unknown"}} {
		name := mdm.MessageTypeOf(msg)
		if name == "" {
			name = "unknown type"
		}
		rqs = append(rqs, request{name, func(c *CertAuth, r *mdm.Request) error {
			_, err := c.Checkin(r, msg)
			return err
		}})
	}
	return append(rqs, request{"CommandAndReportResults", func(c *CertAuth, r *mdm.Request) error {
		_, err := c.CommandAndReportResults(r, &mdm.CommandResults{})
		return err
	}})
}()

type request struct {
	name string
	call func(c *CertAuth, r *mdm.Request) error
}

// wantHashes fails unless device id has exactly the hashes of cs.
func wantHashes(t *testing.T, s *fakeStore, id string, cs ...*x509.Certificate) {
	t.Helper()
	var want []string
	for _, c := range cs {
		want = append(want, cryptoutil.CertHash(c))
	}
	sort.Strings(want)
	have := s.hashesOf(id)
	if fmt.Sprint(have) != fmt.Sprint(want) {
		t.Errorf("hashes of %s: have %v, want %v", id, have, want)
	}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	cs := certs(t, 4)
	certA, certB, renewedA, fresh := cs[0], cs[1], cs[2], cs[3]
	store, next := newFakeStore(), &recorder{}
	c := New(next, store)
	// Each step runs on the state the earlier ones left.
	for _, step := range []struct {
		name    string
		r       *mdm.Request
		want    error // nil, a sentinel, or errAny
		reaches bool
	}{
		{"no certificate", device("A", nil), ErrNoCertificate, false},
		{"first certificate of A", device("A", certA), nil, true},
		{"same certificate again", device("A", certA), nil, true},
		{"first certificate of B", device("B", certB), nil, true},
		{"B's certificate for A", device("A", certB), ErrCertReused, false},
		{"A's certificate for a new device", device("C", certA), ErrCertReused, false},
		{"A's renewed certificate", device("A", renewedA), nil, true},
		{"Authenticate on a user channel", user("D", "U", fresh), mdm.ErrInvalidEnrollment, false},
	} {
		before := next.count()
		err := authenticate(c, step.r)
		if !errors.Is(err, step.want) {
			t.Fatalf("%s: have error %v, want %v", step.name, err, step.want)
		}
		if reached := next.count() > before; reached != step.reaches {
			t.Errorf("%s: reached next service %v, want %v", step.name, reached, step.reaches)
		}
	}
	wantHashes(t, store, "A", certA, renewedA)
	wantHashes(t, store, "B", certB)
	wantHashes(t, store, "C")
	// The refused user-channel Authenticate bound nothing to its device.
	wantHashes(t, store, "D")
	if used, _ := store.HasCertHash(nil, cryptoutil.CertHash(fresh)); used {
		t.Errorf("certificate of the refused user-channel Authenticate is associated")
	}
}

func TestRequests(t *testing.T) {
	t.Parallel()
	cs := certs(t, 4)
	certA, certB, unused, migratedCert := cs[0], cs[1], cs[2], cs[3]
	for _, retro := range []bool{false, true} {
		for _, rq := range requests {
			t.Run(fmt.Sprintf("%s/retro=%v", rq.name, retro), func(t *testing.T) {
				store, next := newFakeStore(), &recorder{}
				var opts []Option
				if retro {
					opts = append(opts, WithAllowRetroactive())
				}
				c := New(next, store, opts...)
				for _, r := range []*mdm.Request{device("A", certA), device("B", certB)} {
					if err := authenticate(c, r); err != nil {
						t.Fatalf("enrolling %s: %v", r.EnrollID.ID, err)
					}
				}
				for _, step := range []struct {
					name string
					r    *mdm.Request
					want error
				}{
					{"associated certificate", device("A", certA), nil},
					{"user channel with its device's certificate", user("A", "U1", certA), nil},
					{"no certificate", device("A", nil), ErrNoCertificate},
					{"another device's certificate", device("A", certB), ErrNotAssociated},
					{"another device's certificate on a user channel", user("A", "U1", certB), ErrNotAssociated},
					{"an unused certificate for an enrolled device", device("A", unused), ErrNotAssociated},
				} {
					before := next.count()
					err := rq.call(c, step.r)
					if !errors.Is(err, step.want) {
						t.Fatalf("%s: have error %v, want %v", step.name, err, step.want)
					}
					if reached := next.count() > before; reached != (step.want == nil) {
						t.Errorf("%s: reached next service %v, want %v", step.name, reached, step.want == nil)
					}
				}
				// An enrollment with no association at all, as after a
				// migration: bound to its first certificate only with retro.
				err := rq.call(c, device("M", migratedCert))
				switch {
				case !retro && !errors.Is(err, ErrNotAssociated):
					t.Fatalf("migrated enrollment without retro: have error %v, want %v", err, ErrNotAssociated)
				case !retro:
					wantHashes(t, store, "M")
				case err != nil:
					t.Fatalf("migrated enrollment with retro: %v", err)
				default:
					wantHashes(t, store, "M", migratedCert)
				}
				wantHashes(t, store, "A", certA)
				wantHashes(t, store, "B", certB)
			})
		}
	}
}

func TestRetroactive(t *testing.T) {
	t.Parallel()
	cs := certs(t, 4)
	certB, first, second, third := cs[0], cs[1], cs[2], cs[3]
	store, next := newFakeStore(), &recorder{}
	c := New(next, store, WithAllowRetroactive())
	if err := authenticate(c, device("B", certB)); err != nil {
		t.Fatalf("enrolling B: %v", err)
	}
	idle := func(r *mdm.Request) error {
		_, err := c.CommandAndReportResults(r, &mdm.CommandResults{})
		return err
	}
	for _, step := range []struct {
		name string
		r    *mdm.Request
		want error
	}{
		{"certificate of another device", device("M", certB), ErrCertReused},
		{"first certificate, through a user channel", user("M", "U", first), nil},
		{"the same on the device channel", device("M", first), nil},
		{"a second certificate", device("M", second), ErrNotAssociated},
		{"a second certificate on a user channel", user("M", "U", second), ErrNotAssociated},
		{"the first certificate for another migrated device", device("N", first), ErrCertReused},
	} {
		if err := idle(step.r); !errors.Is(err, step.want) {
			t.Fatalf("%s: have error %v, want %v", step.name, err, step.want)
		}
	}
	wantHashes(t, store, "M", first)
	wantHashes(t, store, "N")
	// A renewed certificate still arrives through Authenticate.
	if err := authenticate(c, device("M", third)); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	wantHashes(t, store, "M", first, third)
}

func TestStoreErrors(t *testing.T) {
	t.Parallel()
	cert := certs(t, 1)[0]
	boom := errors.New("storage down")
	store, next := newFakeStore(), &recorder{}
	store.err = boom
	c := New(next, store, WithAllowRetroactive())
	if err := authenticate(c, device("A", cert)); !errors.Is(err, boom) {
		t.Errorf("Authenticate: have error %v, want %v", err, boom)
	}
	for _, rq := range requests {
		if err := rq.call(c, device("A", cert)); !errors.Is(err, boom) {
			t.Errorf("%s: have error %v, want %v", rq.name, err, boom)
		}
	}
	if next.count() != 0 {
		t.Errorf("next service called %d times after storage errors, want 0", next.count())
	}
}

// TestConcurrentAuthenticate sends one unused certificate in Authenticates
// for many devices at once: exactly one may win it (the storage decides,
// as AssociateCertHash is atomic), the others are refused ErrCertReused.
func TestConcurrentAuthenticate(t *testing.T) {
	t.Parallel()
	const devices = 16
	for round, cert := range certs(t, 10) {
		store := newFakeStore()
		c := New(&recorder{}, store)
		var wg sync.WaitGroup
		errs := make([]error, devices)
		for i := 0; i < devices; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs[i] = authenticate(c, device(fmt.Sprintf("D%d", i), cert))
			}(i)
		}
		wg.Wait()
		var ok int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrCertReused):
				t.Errorf("round %d: have error %v, want nil or %v", round, err, ErrCertReused)
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d devices won one certificate, want 1", round, ok)
		}
		store.mu.Lock()
		owners := len(store.owners[cryptoutil.CertHash(cert)])
		store.mu.Unlock()
		if owners != 1 {
			t.Fatalf("round %d: certificate associated with %d devices, want 1", round, owners)
		}
	}
}

// TestAdmitCert checks the part of the rules decided before a body is
// read: a bound certificate goes on, an unbound one only where the
// request could be an Authenticate or with retroactive association, and
// what AdmitCert admits is never something check would have refused for
// the same reason.
func TestAdmitCert(t *testing.T) {
	t.Parallel()
	cs := certs(t, 2)
	bound, unbound := cs[0], cs[1]
	store := newFakeStore()
	if err := authenticate(New(&recorder{}, store), device("dev-1", bound)); err != nil {
		t.Fatalf("binding: %v", err)
	}
	ctx := context.Background()
	for _, tt := range []struct {
		name         string
		cert         *x509.Certificate
		authenticate bool
		retro        bool
		want         error
	}{
		{"bound report", bound, false, false, nil},
		{"bound check-in", bound, true, false, nil},
		{"unbound check-in", unbound, true, false, nil},
		{"unbound report", unbound, false, false, ErrNotAssociated},
		{"unbound report retro", unbound, false, true, nil},
		{"no certificate", nil, true, false, ErrNoCertificate},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var opts []Option
			if tt.retro {
				opts = append(opts, WithAllowRetroactive())
			}
			err := New(&recorder{}, store, opts...).AdmitCert(ctx, tt.cert, tt.authenticate)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("AdmitCert: have %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("storage error", func(t *testing.T) {
		failing := newFakeStore()
		failing.err = errors.New("database down")
		if err := New(&recorder{}, failing).AdmitCert(ctx, unbound, false); !errors.Is(err, failing.err) {
			t.Errorf("AdmitCert: have %v, want the storage error", err)
		}
	})
}

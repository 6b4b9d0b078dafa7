package pushsvc_test

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/push"
	pushsvc "github.com/nanomdm/nanomdm/push/service"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

var _ api.Pusher = (*pushsvc.Service)(nil)

// fakeStore keeps push data and certificates in maps and counts the
// certificate round trips.
type fakeStore struct {
	mu          sync.Mutex
	infos       map[string]*mdm.Push
	certs       map[string]*tls.Certificate
	tokens      map[string]string
	infoErr     error
	staleErr    error
	staleChecks map[string]int
	retrievals  map[string]int
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		infos:       map[string]*mdm.Push{},
		certs:       map[string]*tls.Certificate{},
		tokens:      map[string]string{},
		staleChecks: map[string]int{},
		retrievals:  map[string]int{},
	}
}

func (s *fakeStore) RetrievePushInfo(_ context.Context, ids []string) (map[string]*mdm.Push, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.infoErr != nil {
		return nil, s.infoErr
	}
	out := map[string]*mdm.Push{}
	for _, id := range ids {
		if p := s.infos[id]; p != nil {
			c := *p
			out[id] = &c
		}
	}
	return out, nil
}

func (s *fakeStore) RetrievePushCert(_ context.Context, topic string) (*tls.Certificate, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retrievals[topic]++
	c := s.certs[topic]
	if c == nil {
		return nil, "", fmt.Errorf("%w: %q", storage.ErrNoPushCert, topic)
	}
	return c, s.tokens[topic], nil
}

func (s *fakeStore) IsPushCertStale(_ context.Context, topic, token string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.staleChecks[topic]++
	if s.staleErr != nil {
		return false, s.staleErr
	}
	return s.tokens[topic] != token, nil
}

// counts returns the stale checks and retrievals of topic so far.
func (s *fakeStore) counts(topic string) (staleChecks, retrievals int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.staleChecks[topic], s.retrievals[topic]
}

// putCert stores a fresh certificate for topic and returns it.
func (s *fakeStore) putCert(t testing.TB, topic string) *tls.Certificate {
	t.Helper()
	pemCert, pemKey := storagetest.NewPushCert(t, topic)
	c, err := tls.X509KeyPair(pemCert, pemKey)
	if err != nil {
		t.Fatalf("loading cert: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certs[topic] = &c
	s.tokens[topic] = storagetest.RandomUUID()
	return &c
}

// enroll adds n enrollments of topic and returns their IDs.
func (s *fakeStore) enroll(topic string, n int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = storagetest.RandomUUID()
		tok := []byte(storagetest.RandomUUID())
		s.infos[ids[i]] = &mdm.Push{Topic: topic, Token: tok, PushMagic: storagetest.RandomUUID()}
	}
	return ids
}

// fakeProvider answers "<serial>:<hex token>" for every push, or an
// error for tokens in fail. It can hold pushes until released.
type fakeProvider struct {
	cert   *tls.Certificate
	serial int
	hold   chan struct{} // if set, Push waits for it to close
	fail   map[string]error
	closed atomic.Bool
	calls  atomic.Int64
	active atomic.Int64
}

func (p *fakeProvider) Push(ctx context.Context, pushes []*mdm.Push) []push.Response {
	p.calls.Add(1)
	p.active.Add(1)
	defer p.active.Add(-1)
	if p.closed.Load() {
		panic("push through a closed provider")
	}
	if p.hold != nil {
		<-p.hold
	}
	out := make([]push.Response, len(pushes))
	for i, pu := range pushes {
		tok := hex.EncodeToString(pu.Token)
		if err := p.fail[tok]; err != nil {
			out[i].Err = err
			continue
		}
		out[i].ID = fmt.Sprintf("%d:%s", p.serial, tok)
	}
	return out
}

func (p *fakeProvider) Close() {
	if p.active.Load() != 0 {
		panic("closing a provider in use")
	}
	p.closed.Store(true)
}

// fakeFactory builds fakeProviders and remembers them.
type fakeFactory struct {
	mu    sync.Mutex
	built []*fakeProvider
	err   error
	hold  chan struct{}
	fail  map[string]error
}

func (f *fakeFactory) NewProvider(cert *tls.Certificate) (pushsvc.Provider, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	p := &fakeProvider{cert: cert, serial: len(f.built) + 1, hold: f.hold, fail: f.fail}
	f.built = append(f.built, p)
	return p, nil
}

func (f *fakeFactory) providers() []*fakeProvider {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fakeProvider(nil), f.built...)
}

// wantResults fails the test unless each ID has the wanted apns-id or an
// error wrapping the wanted error.
func wantResults(t *testing.T, have map[string]*push.Response, want map[string]any) {
	t.Helper()
	if len(have) != len(want) {
		t.Errorf("results: have %d, want %d", len(have), len(want))
	}
	for id, w := range want {
		r := have[id]
		if r == nil {
			t.Errorf("%s: no result", id)
			continue
		}
		switch w := w.(type) {
		case string:
			if r.Err != nil || r.ID != w {
				t.Errorf("%s: have id %q, error %v; want id %q", id, r.ID, r.Err, w)
			}
		case error:
			if !errors.Is(r.Err, w) {
				t.Errorf("%s: have id %q, error %v; want error %v", id, r.ID, r.Err, w)
			}
		}
	}
}

func tokenOf(s *fakeStore, id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return hex.EncodeToString(s.infos[id].Token)
}

func TestPushGroupsByTopicAndKeepsEveryResult(t *testing.T) {
	store := newFakeStore()
	a, b, noCert := "com.apple.mgmt.A", "com.apple.mgmt.B", "com.apple.mgmt.NoCert"
	certA, certB := store.putCert(t, a), store.putCert(t, b)
	idsA, idsB, idsNoCert := store.enroll(a, 3), store.enroll(b, 2), store.enroll(noCert, 2)
	errBad := errors.New("bad device token")
	f := &fakeFactory{fail: map[string]error{tokenOf(store, idsA[1]): errBad}}
	svc := pushsvc.New(store, f.NewProvider)
	defer svc.Close()

	ids := append(append(append([]string{"unknown-id"}, idsA...), idsB...), idsNoCert...)
	ids = append(ids, idsA[0]) // a duplicate is pushed once
	res, err := svc.Push(context.Background(), ids)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	provs := f.providers()
	if len(provs) != 2 {
		t.Fatalf("providers built: have %d, want 2 (one per topic with a certificate)", len(provs))
	}
	serial := map[*tls.Certificate]int{}
	for _, p := range provs {
		serial[p.cert] = p.serial
		if n := p.calls.Load(); n != 1 {
			t.Errorf("provider %d: %d Push calls, want 1 per topic", p.serial, n)
		}
	}
	id := func(cert *tls.Certificate, id string) string {
		return fmt.Sprintf("%d:%s", serial[cert], tokenOf(store, id))
	}
	wantResults(t, res, map[string]any{
		"unknown-id": push.ErrNoPushInfo,
		idsA[0]:      id(certA, idsA[0]),
		idsA[1]:      errBad,
		idsA[2]:      id(certA, idsA[2]),
		idsB[0]:      id(certB, idsB[0]),
		idsB[1]:      id(certB, idsB[1]),
		idsNoCert[0]: storage.ErrNoPushCert,
		idsNoCert[1]: storage.ErrNoPushCert,
	})
}

func TestPushInfoMissingFields(t *testing.T) {
	store := newFakeStore()
	store.putCert(t, "com.apple.mgmt.A")
	store.infos["no-token"] = &mdm.Push{Topic: "com.apple.mgmt.A", PushMagic: "m"}
	store.infos["no-magic"] = &mdm.Push{Topic: "com.apple.mgmt.A", Token: []byte{1}}
	store.infos["no-topic"] = &mdm.Push{Token: []byte{1}, PushMagic: "m"}
	f := &fakeFactory{}
	res, err := pushsvc.New(store, f.NewProvider).Push(context.Background(), []string{"no-token", "no-magic", "no-topic"})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	wantResults(t, res, map[string]any{
		"no-token": push.ErrNoPushInfo, "no-magic": push.ErrNoPushInfo, "no-topic": push.ErrNoPushInfo,
	})
	if n := len(f.providers()); n != 0 {
		t.Errorf("providers built: have %d, want 0", n)
	}
}

func TestProviderCachedWithOneStaleCheckPerCall(t *testing.T) {
	store := newFakeStore()
	topic := "com.apple.mgmt.A"
	store.putCert(t, topic)
	ids := store.enroll(topic, 50)
	f := &fakeFactory{}
	svc := pushsvc.New(store, f.NewProvider)
	defer svc.Close()
	for call := 1; call <= 4; call++ {
		if _, err := svc.Push(context.Background(), ids); err != nil {
			t.Fatalf("push %d: %v", call, err)
		}
		checks, retrievals := store.counts(topic)
		if checks != call-1 || retrievals != 1 {
			t.Errorf("after call %d: %d stale checks and %d retrievals, want %d and 1", call, checks, retrievals, call-1)
		}
	}
	if n := len(f.providers()); n != 1 {
		t.Errorf("providers built: have %d, want 1", n)
	}
}

func TestCertChangeRebuildsProvider(t *testing.T) {
	store := newFakeStore()
	topic := "com.apple.mgmt.A"
	store.putCert(t, topic)
	ids := store.enroll(topic, 3)
	f := &fakeFactory{}
	svc := pushsvc.New(store, f.NewProvider)
	defer svc.Close()
	if _, err := svc.Push(context.Background(), ids); err != nil {
		t.Fatalf("push: %v", err)
	}
	newCert := store.putCert(t, topic)
	res, err := svc.Push(context.Background(), ids)
	if err != nil {
		t.Fatalf("push after renewal: %v", err)
	}
	provs := f.providers()
	if len(provs) != 2 || provs[1].cert != newCert {
		t.Fatalf("providers: have %d, want a second one with the renewed certificate", len(provs))
	}
	if !provs[0].closed.Load() {
		t.Errorf("replaced provider not closed")
	}
	want := map[string]any{}
	for _, id := range ids {
		want[id] = "2:" + tokenOf(store, id)
	}
	wantResults(t, res, want)
}

func TestReplacedProviderClosedAfterItsPushes(t *testing.T) {
	store := newFakeStore()
	topic := "com.apple.mgmt.A"
	store.putCert(t, topic)
	ids := store.enroll(topic, 3)
	hold := make(chan struct{})
	f := &fakeFactory{hold: hold}
	svc := pushsvc.New(store, f.NewProvider)
	defer svc.Close()

	first := make(chan map[string]*push.Response)
	go func() {
		res, _ := svc.Push(context.Background(), ids)
		first <- res
	}()
	for len(f.providers()) == 0 || f.providers()[0].active.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	store.putCert(t, topic)
	f.mu.Lock()
	f.hold = nil
	f.mu.Unlock()
	if _, err := svc.Push(context.Background(), ids); err != nil {
		t.Fatalf("push during the first: %v", err)
	}
	old := f.providers()[0]
	if old.closed.Load() {
		t.Fatalf("replaced provider closed while a push call still uses it")
	}
	close(hold)
	res := <-first
	if r := res[ids[0]]; r == nil || r.Err != nil || r.ID != "1:"+tokenOf(store, ids[0]) {
		t.Errorf("first call: have %+v, want the old provider's answer", r)
	}
	if !old.closed.Load() {
		t.Errorf("replaced provider not closed once its push call ended")
	}
}

func TestStorageErrors(t *testing.T) {
	store := newFakeStore()
	topic := "com.apple.mgmt.A"
	store.putCert(t, topic)
	ids := store.enroll(topic, 2)
	f := &fakeFactory{}
	svc := pushsvc.New(store, f.NewProvider)
	defer svc.Close()

	errDown := errors.New("database down")
	store.infoErr = errDown
	if res, err := svc.Push(context.Background(), ids); !errors.Is(err, errDown) || len(res) != 0 {
		t.Errorf("push with failing push info: have %v, %v; want no results and %v", res, err, errDown)
	}
	store.infoErr = nil

	f.err = errDown
	res, err := svc.Push(context.Background(), ids)
	if err != nil {
		t.Fatalf("push with failing factory: %v", err)
	}
	wantResults(t, res, map[string]any{ids[0]: errDown, ids[1]: errDown})
	f.err = nil

	if _, err := svc.Push(context.Background(), ids); err != nil {
		t.Fatalf("push: %v", err)
	}
	store.staleErr = errDown
	res, _ = svc.Push(context.Background(), ids)
	wantResults(t, res, map[string]any{ids[0]: errDown, ids[1]: errDown})
}

func TestConcurrentPushesAndRenewals(t *testing.T) {
	store := newFakeStore()
	topics := []string{"com.apple.mgmt.A", "com.apple.mgmt.B"}
	var ids []string
	for _, topic := range topics {
		store.putCert(t, topic)
		ids = append(ids, store.enroll(topic, 20)...)
	}
	f := &fakeFactory{}
	svc := pushsvc.New(store, f.NewProvider)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if g == 0 && i%4 == 0 {
					store.putCert(t, topics[i%2])
				}
				res, err := svc.Push(context.Background(), ids)
				if err != nil {
					t.Errorf("push: %v", err)
					return
				}
				for id, r := range res {
					if r.Err != nil {
						t.Errorf("%s: %v", id, r.Err)
					}
				}
			}
		}()
	}
	wg.Wait()
	svc.Close()
	for _, p := range f.providers() {
		if !p.closed.Load() {
			t.Errorf("provider %d not closed after Close", p.serial)
		}
	}
}

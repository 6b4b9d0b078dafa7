package pushsvc_test

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nanomdm/nanomdm/http/api"
	"github.com/nanomdm/nanomdm/push/nanopush"
	"github.com/nanomdm/nanomdm/push/nanopush/apnstest"
	pushsvc "github.com/nanomdm/nanomdm/push/service"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/inmem"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// nanopushFactory builds real providers that push to srv.
func nanopushFactory(t testing.TB, srv *apnstest.Server, opts ...nanopush.Option) *nanopush.Factory {
	t.Helper()
	opts = append([]nanopush.Option{nanopush.WithBaseURL(srv.URL), nanopush.WithRootCAs(srv.RootCAs())}, opts...)
	f, err := nanopush.NewFactory(opts...)
	if err != nil {
		t.Fatalf("nanopush factory: %v", err)
	}
	return f
}

// uploadCert PUTs a new push certificate for topic through the API
// handler and returns its DER.
func uploadCert(t testing.TB, store api.PushCertStore, topic string) []byte {
	t.Helper()
	pemCert, pemKey := storagetest.NewPushCert(t, topic)
	rec := httptest.NewRecorder()
	api.PushCertHandler(store).ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/v1/pushcert", bytes.NewReader(append(pemCert, pemKey...))))
	if rec.Code != http.StatusOK {
		t.Fatalf("uploading push cert: have %d %s, want 200", rec.Code, rec.Body)
	}
	b, _ := pem.Decode(pemCert)
	return b.Bytes
}

// enrollDevices enrolls n devices on topic in store.
func enrollDevices(t testing.TB, store storage.CheckinStore, topic string, n int) []*storagetest.Channel {
	t.Helper()
	devs := make([]*storagetest.Channel, n)
	for i := range devs {
		devs[i] = storagetest.NewDevice(t)
		devs[i].Topic = topic
		devs[i].Enroll(t, store)
	}
	return devs
}

func idsOf(devs []*storagetest.Channel) []string {
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.ID()
	}
	return ids
}

// call sends a request to h and decodes the API answer.
func call(t *testing.T, h http.Handler, method, target string, body []byte) (int, *api.Response) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, bytes.NewReader(body)))
	var resp api.Response
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("%s %s: answer %q: %v", method, target, rec.Body, err)
	}
	return rec.Code, &resp
}

func TestEnqueuePushesThroughService(t *testing.T) {
	store := inmem.New()
	topic := storagetest.NewTopic()
	certDER := uploadCert(t, store, topic)
	devs := enrollDevices(t, store, topic, 3)
	srv := apnstest.NewServer(t, nil)
	svc := pushsvc.New(store, nanopushFactory(t, srv).NewProvider)
	defer svc.Close()
	h := http.StripPrefix("/v1/enqueue/", api.EnqueueHandler(store, api.WithPusher(svc)))

	cmd := storagetest.NewCommand(t, "ProfileList")
	code, resp := call(t, h, http.MethodPut, "/v1/enqueue/"+strings.Join(idsOf(devs), ","), cmd.Raw)
	if code != http.StatusOK || resp.CommandUUID != cmd.CommandUUID || resp.PushError != "" {
		t.Fatalf("enqueue: have %d %+v, want 200 for command %s", code, resp, cmd.CommandUUID)
	}
	pushes := map[string]apnstest.Push{}
	for _, p := range srv.Pushes() {
		pushes[p.Token] = p
	}
	for _, d := range devs {
		st := resp.Status[d.ID()]
		if st == nil || st.PushResult == "" || st.PushError != "" || st.CommandError != "" {
			t.Errorf("%s: have status %+v, want an apns-id as push_result", d.ID(), st)
		}
		p, ok := pushes[hex.EncodeToString(d.Token)]
		switch {
		case !ok:
			t.Errorf("%s: APNs received no push for its token", d.ID())
		case p.PushMagic != d.PushMagic:
			t.Errorf("%s: push magic %q, want %q", d.ID(), p.PushMagic, d.PushMagic)
		case !bytes.Equal(p.ClientCert.Raw, certDER):
			t.Errorf("%s: pushed with a certificate other than the uploaded one", d.ID())
		}
		storagetest.WantNext(t, store, d, false, cmd)
	}

	cmd2 := storagetest.NewCommand(t, "DeviceInformation")
	code, resp = call(t, h, http.MethodPut, "/v1/enqueue/"+devs[0].ID()+"?nopush=1", cmd2.Raw)
	if code != http.StatusOK || !resp.NoPush {
		t.Errorf("enqueue with nopush: have %d %+v, want 200 with no_push", code, resp)
	}
	if n := srv.Count(); n != len(devs) {
		t.Errorf("pushes after nopush enqueue: have %d, want %d (none more)", n, len(devs))
	}
}

func TestPushAPIPartialFailure(t *testing.T) {
	store := inmem.New()
	topic := storagetest.NewTopic()
	uploadCert(t, store, topic)
	devs := enrollDevices(t, store, topic, 4)
	gone, bad := hex.EncodeToString(devs[1].Token), hex.EncodeToString(devs[2].Token)
	srv := apnstest.NewServer(t, func(p *apnstest.Push) apnstest.Reply {
		switch p.Token {
		case gone:
			return apnstest.Reply{Status: 410, Reason: "Unregistered"}
		case bad:
			return apnstest.Reply{Status: 400, Reason: "BadDeviceToken"}
		}
		return apnstest.Reply{}
	})
	svc := pushsvc.New(store, nanopushFactory(t, srv).NewProvider)
	defer svc.Close()
	h := http.StripPrefix("/v1/push/", api.PushHandler(api.WithPusher(svc)))
	unknown := storagetest.RandomUUID()
	code, resp := call(t, h, http.MethodGet, "/v1/push/"+strings.Join(append(idsOf(devs), unknown), ","), nil)
	if code != http.StatusMultiStatus {
		t.Errorf("push: have status %d, want 207", code)
	}
	for id, want := range map[string]string{
		devs[1].ID(): "Unregistered",
		devs[2].ID(): "BadDeviceToken",
		unknown:      "push data missing for id",
	} {
		if st := resp.Status[id]; st == nil || !strings.Contains(st.PushError, want) || st.PushResult != "" {
			t.Errorf("%s: have %+v, want push_error containing %q", id, st, want)
		}
	}
	for _, d := range []*storagetest.Channel{devs[0], devs[3]} {
		if st := resp.Status[d.ID()]; st == nil || st.PushResult == "" || st.PushError != "" {
			t.Errorf("%s: have %+v, want a push_result", d.ID(), st)
		}
	}
}

func TestCertRotationEndToEnd(t *testing.T) {
	store := inmem.New()
	topic := storagetest.NewTopic()
	var want atomic.Pointer[[]byte]
	first := uploadCert(t, store, topic)
	want.Store(&first)
	devs := enrollDevices(t, store, topic, 5)
	srv := apnstest.NewServer(t, func(p *apnstest.Push) apnstest.Reply {
		if !bytes.Equal(p.ClientCert.Raw, *want.Load()) {
			return apnstest.Reply{Status: 403, Reason: "BadCertificate"}
		}
		return apnstest.Reply{}
	})
	svc := pushsvc.New(store, nanopushFactory(t, srv).NewProvider)
	defer svc.Close()
	h := http.StripPrefix("/v1/push/", api.PushHandler(api.WithPusher(svc)))
	path := "/v1/push/" + strings.Join(idsOf(devs), ",")
	if code, resp := call(t, h, http.MethodPost, path, nil); code != 200 {
		t.Fatalf("push with the first cert: have %d %+v, want 200", code, resp)
	}
	second := uploadCert(t, store, topic)
	want.Store(&second)
	if code, resp := call(t, h, http.MethodPost, path, nil); code != 200 {
		t.Fatalf("push after uploading a new cert: have %d %+v, want 200 (pushed with the new cert)", code, resp)
	}
	pushes := srv.Pushes()
	if len(pushes) != 2*len(devs) {
		t.Fatalf("pushes: have %d, want %d", len(pushes), 2*len(devs))
	}
	for i, p := range pushes {
		wantCert := first
		if i >= len(devs) {
			wantCert = second
		}
		if !bytes.Equal(p.ClientCert.Raw, wantCert) {
			have, _ := x509.ParseCertificate(p.ClientCert.Raw)
			t.Errorf("push %d used certificate serial %v, want the %s", i, have.SerialNumber, map[bool]string{true: "first", false: "second"}[i < len(devs)])
		}
	}
}

func TestGoAwayThroughAPI(t *testing.T) {
	store := inmem.New()
	topic := storagetest.NewTopic()
	uploadCert(t, store, topic)
	devs := enrollDevices(t, store, topic, 300)
	var n atomic.Int64
	srv := apnstest.NewServer(t, func(*apnstest.Push) apnstest.Reply {
		return apnstest.Reply{GoAway: n.Add(1)%40 == 0}
	})
	svc := pushsvc.New(store, nanopushFactory(t, srv).NewProvider)
	defer svc.Close()
	h := http.StripPrefix("/v1/push/", api.PushHandler(api.WithPusher(svc)))
	code, resp := call(t, h, http.MethodPost, "/v1/push/"+strings.Join(idsOf(devs), ","), nil)
	if code != 200 {
		var failed []string
		for id, st := range resp.Status {
			if st.PushError != "" {
				failed = append(failed, id+": "+st.PushError)
			}
		}
		t.Errorf("push through GOAWAYs: have %d, want 200; failures: %v", code, failed)
	}
	if c := srv.Connections(); c < 2 {
		t.Errorf("connections: have %d, want reconnects after GOAWAY", c)
	}
}

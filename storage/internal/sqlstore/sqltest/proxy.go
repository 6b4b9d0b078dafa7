package sqltest

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	mdmhttp "github.com/nanomdm/nanomdm/http"
	"github.com/nanomdm/nanomdm/log"
	"github.com/nanomdm/nanomdm/storage/internal/sqlstore"
)

// Proxy is a loopback TCP proxy between a store and its database server,
// used through sqlstore.sqlstore.WithDial(p.Dial). Drop cuts every connection it
// carries, as a database restart or a network blip does.
type Proxy struct {
	ln     net.Listener
	dialMu sync.Mutex  // one dial at a time, so the accepted side knows its target
	next   chan string // target of the next accepted connection
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// NewProxy starts a proxy that is closed when t ends.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{ln: ln, conns: map[net.Conn]struct{}{}, next: make(chan string, 1)}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.Drop()
	})
	return p
}

// Dial connects to addr through the proxy.
func (p *Proxy) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	p.next <- addr
	return d.DialContext(ctx, "tcp", p.ln.Addr().String())
}

func (p *Proxy) accept() {
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		addr := <-p.next
		up, err := net.Dial("tcp", addr)
		if err != nil {
			down.Close()
			continue
		}
		p.mu.Lock()
		p.conns[down], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go pipe(up, down)
		go pipe(down, up)
	}
}

func pipe(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Drop closes every connection the proxy carries; new ones go through.
func (p *Proxy) Drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// TestReadyAfterDrop fills the pool with idle connections, drops them all
// at the proxy, and asks /readyz once: with the database reachable again,
// that one probe must answer 200, not spend one dead pooled connection
// per probe.
func TestReadyAfterDrop(t *testing.T, b *Backend) {
	const poolSize = 4
	p := NewProxy(t)
	s := b.OpenFresh(t, "max_open_conns=4", sqlstore.WithDial(p.Dial))
	ctx := context.Background()
	conns := make([]interface{ Close() error }, 0, poolSize)
	for range poolSize {
		c, err := s.DB().Conn(ctx)
		if err != nil {
			t.Fatalf("filling the pool: %v", err)
		}
		if err := c.PingContext(ctx); err != nil {
			t.Fatalf("filling the pool: %v", err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
	if idle := s.DB().Stats().Idle; idle != poolSize {
		t.Fatalf("pool holds %d idle connections, want %d", idle, poolSize)
	}
	p.Drop()
	h := mdmhttp.ReadyHandler(s, mdmhttp.DefaultReadyTimeout, log.Nop)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("first /readyz after the connections dropped: have %d %s, want 200", rec.Code, rec.Body)
	}
}

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/cryptoutil"
	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// waitGoroutines waits until the process runs at most want goroutines,
// failing with a dump of them after timeout.
func waitGoroutines(t *testing.T, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("have %d goroutines, want at most %d:\n%s", n, want, buf)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// slowConn is one slow-loris connection and what became of it.
type slowConn struct {
	status int   // status of the answer, 0 if none
	err    error // how reading the answer ended, if no answer
	after  time.Duration
}

// slowLoris opens a connection and sends head, then trickles one byte of
// trickle every interval until the server answers or closes.
func slowLoris(addr, head string, interval time.Duration, out *slowConn, wg *sync.WaitGroup) {
	defer wg.Done()
	start := time.Now()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		out.err = err
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		out.err = err
		return
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if _, err := conn.Write([]byte("x")); err != nil {
					return
				}
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	out.after = time.Since(start)
	if err != nil {
		out.err = err
		return
	}
	resp.Body.Close()
	out.status = resp.StatusCode
}

// enqueueNoPush queues a ProfileList with uuid for id without push; safe
// to call from any goroutine.
func enqueueNoPush(client *http.Client, s *server, uuid, id string) error {
	cmd, err := mdm.NewCommand(uuid, "ProfileList", nil)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPut, s.url+"/v1/enqueue/"+id+"?nopush=1", strings.NewReader(string(cmd.Raw)))
	if err != nil {
		return err
	}
	req.SetBasicAuth("nanomdm", testAPIKey)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("enqueue %s: status %d", uuid, resp.StatusCode)
	}
	return nil
}

// TestSlowClients opens many slow-loris connections, half trickling their
// headers and half their body, while simulated devices keep working. The
// devices are served promptly throughout; slow bodies are answered 408
// once the read timeout passes; slow headers are cut at the header
// timeout (net/http closes those without an answer); and afterwards no
// goroutine is left behind.
func TestSlowClients(t *testing.T) {
	const (
		headerTimeout = 3 * time.Second
		readTimeout   = 5 * time.Second
		slowPerKind   = 100
		devices       = 8
	)
	s := startServer(t, "-storage", "inmem",
		"-read-header-timeout", headerTimeout.String(), "-read-timeout", readTimeout.String())
	addr := strings.TrimPrefix(s.url, "http://")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	tr := &simulator.Transport{URL: s.url + "/mdm", Client: client}
	var devs []*simulator.Device
	for i := 0; i < devices; i++ {
		devs = append(devs, enrolled(t, s, tr, fmt.Sprintf("busy device %d", i)))
	}
	client.CloseIdleConnections()
	baseline := runtime.NumGoroutine()

	// The slow bodies come with a device's identity: the server reads
	// bodies only after the identity in the headers passed.
	sig, err := cryptoutil.SignMdmSignature(make([]byte, 100000), devs[0].Identity.Cert, devs[0].Identity.Key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	var wg sync.WaitGroup
	headers := make([]slowConn, slowPerKind)
	bodies := make([]slowConn, slowPerKind)
	for i := 0; i < slowPerKind; i++ {
		wg.Add(2)
		go slowLoris(addr, "PUT /mdm HTTP/1.1\r\nHost: x\r\nX-Slow: ", 200*time.Millisecond, &headers[i], &wg)
		go slowLoris(addr, "PUT /mdm HTTP/1.1\r\nHost: x\r\nContent-Type: "+mdm.CheckinContentType+
			"\r\nMdm-Signature: "+sig+"\r\nContent-Length: 100000\r\n\r\n", 200*time.Millisecond, &bodies[i], &wg)
	}

	// Devices keep checking in and fetching commands while the slow
	// connections hang on.
	ctx := context.Background()
	var slowest time.Duration
	var mu sync.Mutex
	var dwg sync.WaitGroup
	deadline := time.Now().Add(readTimeout)
	for i, d := range devs {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			for n := 0; time.Now().Before(deadline); n++ {
				uuid := fmt.Sprintf("busy-%d-%d", i, n)
				err := enqueueNoPush(client, s, uuid, d.UDID())
				start := time.Now()
				var cmd *mdm.Command
				if err == nil {
					cmd, err = d.Channel.Idle(ctx)
				}
				if err == nil && (cmd == nil || cmd.CommandUUID != uuid) {
					err = fmt.Errorf("have command %v, want %s", cmd, uuid)
				}
				if err == nil {
					_, err = d.Channel.Send(ctx, simulator.Acknowledge(cmd))
				}
				took := time.Since(start)
				if err != nil {
					t.Errorf("device %d round %d during the slow-loris: %v", i, n, err)
					return
				}
				mu.Lock()
				slowest = max(slowest, took)
				mu.Unlock()
			}
		}()
	}
	dwg.Wait()
	wg.Wait()
	// Were the slow connections holding the server up, devices would wait
	// for them to be cut (the header timeout at least).
	t.Logf("slowest device round trip among %d slow connections: %v", 2*slowPerKind, slowest)
	if slowest > headerTimeout/2 {
		t.Errorf("slowest device round trip %v, want under %v", slowest, headerTimeout/2)
	}

	for i, c := range bodies {
		if c.status != http.StatusRequestTimeout {
			t.Errorf("slow body %d: have status %d (err %v), want 408", i, c.status, c.err)
		} else if c.after > readTimeout+2*time.Second {
			t.Errorf("slow body %d answered after %v, want about %v", i, c.after, readTimeout)
		}
	}
	for i, c := range headers {
		if c.status != 0 && c.status != http.StatusRequestTimeout {
			t.Errorf("slow headers %d: have status %d, want the connection cut (or 408)", i, c.status)
		}
		if c.after > headerTimeout+2*time.Second {
			t.Errorf("slow headers %d cut after %v, want about %v", i, c.after, headerTimeout)
		}
	}
	client.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	waitGoroutines(t, baseline+5, 10*time.Second)
}

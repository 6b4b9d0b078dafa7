package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/http/enroll"
	"github.com/nanomdm/nanomdm/http/scep"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage/inmem"
)

// TestLoadEnrollURL: with -enroll-url the fleet gets its identities from
// the SCEP server of the enrollment profile, one profile download (and
// one-time challenge) per device, and runs as with a local CA.
func TestLoadEnrollURL(t *testing.T) {
	sim, err := simulator.NewRSACA("load SCEP CA")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := sim.KeyPEM()
	ca, err := scep.NewCA(sim.CertPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	store := inmem.New()
	challenges := scep.NewChallenges("", store, time.Minute)
	srv := testServer(t, sim, store, func(mux *http.ServeMux, url string) {
		profile, err := enroll.Handler(enroll.Config{
			ServerURL: url + "/mdm", Topic: simulator.DefaultTopic, SignMessage: true,
			SCEP: &enroll.SCEP{URL: url + "/scep"},
		}, enroll.WithChallenges(challenges))
		if err != nil {
			t.Fatal(err)
		}
		mux.Handle("/scep", scep.Handler(ca, challenges))
		mux.Handle("/mdm/enroll", profile)
	})

	const devices = 4
	s, err := runLoadTest(t, srv.URL, "unused.pem", "unused.key", filepath.Join(t.TempDir(), "fleet.json"),
		"-enroll-url", srv.URL+"/mdm/enroll", "-key-type", "rsa", "-devices", fmt.Sprint(devices),
		"-workers", "2", "-rounds", "1", "-commands", "1")
	if err != nil {
		t.Fatalf("load run: %v (problems %v)", err, s.Problems)
	}
	if !s.OK || s.Minted != devices || s.Commands.Acknowledged == 0 {
		t.Errorf("summary: ok %v, minted %d, commands %+v; want ok, %d minted, commands acknowledged", s.OK, s.Minted, s.Commands, devices)
	}
}

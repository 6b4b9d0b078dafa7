package storagetest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// The cases of this file cover what the page of one enrollment reads
// and changes: storage.EnrollmentDetailer and storage.QueuedCommandRemover.

func testIdentityCert(t *testing.T, s storage.AllStorage) {
	ctx := context.Background()
	wantCert := func(what string, id string, want []byte) {
		t.Helper()
		have, err := s.RetrieveIdentityCert(ctx, id)
		switch {
		case err != nil:
			t.Fatalf("%s: identity certificate of %q: %v", what, id, err)
		case have == nil && want != nil:
			t.Errorf("%s: identity certificate of %q: have none, want one", what, id)
		case have != nil && !bytes.Equal(have.Raw, want):
			t.Errorf("%s: identity certificate of %q: have %q, want %v", what, id, have.Subject.CommonName, want != nil)
		}
	}
	dev := NewDevice(t)
	dev.Certificate = NewIdentityCert(t)
	dev.Enroll(t, s)
	user := dev.NewUser(t)
	user.Enroll(t, s)
	wantCert("after enrolling", dev.ID(), dev.Certificate.Raw)
	wantCert("user channel", user.ID(), dev.Certificate.Raw)

	// A new Authenticate brings a new certificate, or none.
	dev.Certificate = NewIdentityCert(t)
	dev.Enroll(t, s)
	wantCert("after a second Authenticate", dev.ID(), dev.Certificate.Raw)
	dev.Certificate = nil
	dev.Enroll(t, s)
	wantCert("after an Authenticate without certificate", dev.ID(), nil)

	plain := NewDevice(t)
	plain.Enroll(t, s)
	wantCert("enrolled without certificate", plain.ID(), nil)
	for _, id := range []string{NewDevice(t).ID(), "", "../" + dev.ID(), "bad\nid"} {
		wantCert("unknown or malformed", id, nil)
	}
}

func testRecentResults(t *testing.T, s storage.AllStorage, discards bool) {
	ctx := context.Background()
	recent := func(id string, n int) string {
		t.Helper()
		have, err := s.RetrieveRecentResults(ctx, id, n)
		if err != nil {
			t.Fatalf("recent results of %q: %v", id, err)
		}
		var out []string
		for i, r := range have {
			out = append(out, r.CommandUUID+"/"+r.RequestType+"/"+r.Status)
			if i > 0 && r.At.After(have[i-1].At) {
				t.Errorf("recent results of %q: %s (%v) after the older %s (%v)", id, r.CommandUUID, r.At, have[i-1].CommandUUID, have[i-1].At)
			}
			if d := time.Since(r.At); d < -time.Minute || d > time.Hour {
				t.Errorf("recent results of %q: %s stored at %v, not about now", id, r.CommandUUID, r.At)
			}
			if rep, err := mdm.DecodeCommandResults(r.Raw); err != nil || rep.CommandUUID != r.CommandUUID || rep.Status != r.Status {
				t.Errorf("recent results of %q: raw report of %s does not decode to it: %v", id, r.CommandUUID, err)
			}
		}
		return strings.Join(out, " ")
	}
	line := func(c *mdm.Command, status string) string {
		return c.CommandUUID + "/" + c.Command.RequestType + "/" + status
	}
	dev := NewDevice(t)
	dev.Enroll(t, s)
	user := dev.NewUser(t)
	user.Enroll(t, s)
	if have := recent(dev.ID(), 10); have != "" {
		t.Errorf("recent results before any report: have %q, want none", have)
	}
	ack, fail, later := NewCommand(t, "ProfileList"), NewBinaryCommand(t, "DeviceInformation"), NewCommand(t, "InstalledApplicationList")
	mine := NewCommand(t, "SecurityInfo")
	Enqueue(t, s, ack, dev)
	Enqueue(t, s, fail, dev)
	Enqueue(t, s, later, dev)
	Enqueue(t, s, mine, user)
	StoreReport(t, s, dev, mdm.StatusAcknowledged, ack.CommandUUID)
	pause()
	StoreReport(t, s, dev, mdm.StatusError, fail.CommandUUID)
	pause()
	StoreReport(t, s, dev, mdm.StatusNotNow, later.CommandUUID)
	StoreReport(t, s, user, mdm.StatusAcknowledged, mine.CommandUUID)

	want := line(later, mdm.StatusNotNow) + " " + line(fail, mdm.StatusError) + " " + line(ack, mdm.StatusAcknowledged)
	wantTwo := line(later, mdm.StatusNotNow) + " " + line(fail, mdm.StatusError)
	if discards {
		want, wantTwo = line(later, mdm.StatusNotNow), line(later, mdm.StatusNotNow)
	}
	if have := recent(dev.ID(), 10); have != want {
		t.Errorf("recent results, newest first:\nhave %q\nwant %q", have, want)
	}
	if have := recent(dev.ID(), 0); have != want {
		t.Errorf("recent results with n 0 (the default page):\nhave %q\nwant %q", have, want)
	}
	if have := recent(dev.ID(), 2); have != wantTwo {
		t.Errorf("two recent results:\nhave %q\nwant %q", have, wantTwo)
	}
	if have, want := recent(user.ID(), 10), line(mine, mdm.StatusAcknowledged); !discards && have != want {
		t.Errorf("recent results of the user channel: have %q, want %q", have, want)
	}

	// The final report replaces the NotNow one and is the newest.
	pause()
	StoreReport(t, s, dev, mdm.StatusAcknowledged, later.CommandUUID)
	want = line(later, mdm.StatusAcknowledged) + " " + line(fail, mdm.StatusError) + " " + line(ack, mdm.StatusAcknowledged)
	if discards {
		want = ""
	}
	if have := recent(dev.ID(), 10); have != want {
		t.Errorf("recent results after the final report:\nhave %q\nwant %q", have, want)
	}
	for _, id := range []string{NewDevice(t).ID(), "", "../" + dev.ID()} {
		if have := recent(id, 10); have != "" {
			t.Errorf("recent results of unknown or malformed %q: have %q, want none", id, have)
		}
	}
}

func testRemoveQueuedCommand(t *testing.T, s storage.AllStorage) {
	ctx := context.Background()
	remove := func(id, uuid string, want error) {
		t.Helper()
		if err := s.RemoveQueuedCommand(ctx, id, uuid); !errors.Is(err, want) {
			t.Fatalf("removing %s from %q: have error %v, want %v", uuid, id, err, want)
		}
	}
	queue := func(c *Channel) []storage.QueuedCommand {
		t.Helper()
		q, err := s.RetrieveQueue(ctx, c.ID(), "", 0)
		if err != nil {
			t.Fatalf("queue of %s: %v", c, err)
		}
		return q
	}
	dev, other := NewDevice(t), NewDevice(t)
	user := dev.NewUser(t)
	for _, c := range []*Channel{dev, user, other} {
		c.Enroll(t, s)
	}
	shared, next, deferred := NewCommand(t, "ProfileList"), NewCommand(t, "DeviceInformation"), NewCommand(t, "SecurityInfo")
	Enqueue(t, s, shared, dev, user, other)
	Enqueue(t, s, next, dev)
	Enqueue(t, s, deferred, dev)
	StoreReport(t, s, dev, mdm.StatusNotNow, deferred.CommandUUID)

	remove(dev.ID(), shared.CommandUUID, nil)
	wantQueue(t, "device queue after removing the first", queue(dev), []*mdm.Command{next, deferred}, map[string]int{deferred.CommandUUID: 1})
	WantNext(t, s, dev, false, next)
	WantNext(t, s, user, false, shared)
	WantNext(t, s, other, false, shared)
	remove(dev.ID(), deferred.CommandUUID, nil) // NotNow ones too
	wantQueue(t, "device queue after removing the NotNow one", queue(dev), []*mdm.Command{next}, nil)

	// Removed, answered or never queued: not outstanding.
	remove(dev.ID(), shared.CommandUUID, storage.ErrUnknownCommand)
	wantReportError(t, s, dev, mdm.StatusAcknowledged, shared.CommandUUID, storage.ErrUnknownCommand)
	StoreReport(t, s, dev, mdm.StatusAcknowledged, next.CommandUUID)
	remove(dev.ID(), next.CommandUUID, storage.ErrUnknownCommand)
	remove(dev.ID(), RandomUUID(), storage.ErrUnknownCommand)
	remove(dev.ID(), "", storage.ErrUnknownCommand)
	for _, id := range []string{NewDevice(t).ID(), "", "../" + dev.ID()} {
		remove(id, shared.CommandUUID, storage.ErrUnknownEnrollment)
	}

	// The user channel's queue is its own; the other device still gets
	// the command and can answer it.
	remove(user.ID(), shared.CommandUUID, nil)
	WantNext(t, s, user, false, nil)
	WantNext(t, s, other, false, shared)
	StoreReport(t, s, other, mdm.StatusAcknowledged, shared.CommandUUID)
	WantNext(t, s, other, false, nil)
}

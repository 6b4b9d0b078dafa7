package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

// The cases of this file cover the roles operators and the auth proxy
// read through: storage.CertAuthRetriever, storage.Pinger and
// storage.InspectionStore, roles of storage.AllStorage.

// NewCertHash returns a random hash shaped like cryptoutil.CertHash.
func NewCertHash() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func testCertHashOwner(t *testing.T, s storage.AllStorage) {
	ctx := context.Background()
	finder := s

	dev := NewDevice(t)
	dev.Enroll(t, s)
	user := dev.NewUser(t)
	user.Enroll(t, s)
	hash := NewCertHash()
	if err := s.AssociateCertHash(dev.Request(), hash, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("associate: %v", err)
	}
	if have, err := finder.RetrieveEnrollmentIDByCertHash(ctx, hash); err != nil || have != dev.ID() {
		t.Errorf("enrollment of hash: have %q, %v; want %q", have, err, dev.ID())
	}

	// A hash associated through a user channel belongs to its device.
	userHash := NewCertHash()
	if err := s.AssociateCertHash(user.Request(), userHash, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("associate on user channel: %v", err)
	}
	if have, err := finder.RetrieveEnrollmentIDByCertHash(ctx, userHash); err != nil || have != dev.ID() {
		t.Errorf("enrollment of hash associated on user channel: have %q, %v; want device %q", have, err, dev.ID())
	}

	// Unknown hashes name no enrollment.
	for _, h := range []string{NewCertHash(), strings.ToUpper(hash)} {
		if have, err := finder.RetrieveEnrollmentIDByCertHash(ctx, h); !errors.Is(err, storage.ErrUnknownEnrollment) {
			t.Errorf("enrollment of unknown hash %s: have %q, %v; want error %v", h, have, err, storage.ErrUnknownEnrollment)
		}
	}

	// A hash bound to one device is refused for another and stays with
	// the first.
	shared := NewCertHash()
	a, b := NewDevice(t), NewDevice(t)
	a.Enroll(t, s)
	b.Enroll(t, s)
	if err := s.AssociateCertHash(a.Request(), shared, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("associate hash: %v", err)
	}
	if err := s.AssociateCertHash(b.Request(), shared, time.Now().Add(time.Hour)); !errors.Is(err, storage.ErrCertHashTaken) {
		t.Errorf("associate a bound hash with another device: have %v, want %v", err, storage.ErrCertHashTaken)
	}
	if have, err := finder.RetrieveEnrollmentIDByCertHash(ctx, shared); err != nil || have != a.ID() {
		t.Errorf("enrollment of refused hash: have %q, %v; want the first device %q", have, err, a.ID())
	}
}

func testPing(t *testing.T, s storage.AllStorage) {
	if err := s.Ping(context.Background()); err != nil {
		t.Errorf("ping: %v", err)
	}
}

// wantEnrollments fails the test unless have lists exactly the want
// channels, in order, by ID.
func wantEnrollments(t *testing.T, what string, have []storage.Enrollment, want ...*Channel) {
	t.Helper()
	var h, w []string
	for _, e := range have {
		h = append(h, e.ID)
	}
	for _, c := range want {
		w = append(w, c.ID())
	}
	if strings.Join(h, ",") != strings.Join(w, ",") {
		t.Errorf("%s: have %d enrollments %v, want %d %v", what, len(h), h, len(w), w)
	}
}

// sortedChannels returns chans sorted by ID.
func sortedChannels(chans ...*Channel) []*Channel {
	out := append([]*Channel(nil), chans...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

func channelIDs(chans ...*Channel) []string {
	out := make([]string, len(chans))
	for i, c := range chans {
		out[i] = c.ID()
	}
	return out
}

// pause makes sure the clocks of the store and of the test move on
// measurably between two steps (SQL servers keep microseconds).
func pause() { time.Sleep(20 * time.Millisecond) }

func testListEnrollments(t *testing.T, s storage.AllStorage) {
	ctx := context.Background()
	lister := s
	list := func(q storage.EnrollmentQuery) []storage.Enrollment {
		t.Helper()
		have, err := lister.RetrieveEnrollments(ctx, &q)
		if err != nil {
			t.Fatalf("retrieve enrollments %+v: %v", q, err)
		}
		return have
	}

	start := time.Now()
	pause()
	dev := NewDevice(t)
	dev.Enroll(t, s)
	if err := s.StoreTokenUpdate(dev.Request(), dev.TokenUpdate(t)); err != nil { // tally 2
		t.Fatalf("token update: %v", err)
	}
	if err := s.StoreBootstrapToken(dev.Request(), dev.SetBootstrapToken(t, []byte("secret token"))); err != nil {
		t.Fatalf("escrow bootstrap token: %v", err)
	}
	user := dev.NewUser(t)
	user.Enroll(t, s)
	ue := NewUserEnrollmentDevice(t)
	ue.Enroll(t, s)
	out := NewDevice(t)
	out.Enroll(t, s)
	if err := s.Disable(out.Request()); err != nil {
		t.Fatalf("disable: %v", err)
	}
	authOnly := NewDevice(t)
	if err := s.StoreAuthenticate(authOnly.Request(), authOnly.Authenticate(t)); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	pause()
	middle := time.Now()
	pause()
	late := NewDevice(t)
	late.Enroll(t, s)
	pause()
	end := time.Now()

	all := sortedChannels(dev, user, ue, out, late)
	allIDs := append(channelIDs(all...), authOnly.ID(), RandomUUID(), "bad/id", all[0].ID())

	// Every field, for every kind of channel.
	have := list(storage.EnrollmentQuery{IDs: allIDs})
	wantEnrollments(t, "by IDs", have, all...)
	want := map[string]storage.Enrollment{
		dev.ID():  {ID: dev.ID(), Type: dev.EnrollID.Type.String(), Enabled: true, SerialNumber: dev.SerialNumber, Topic: dev.Topic, TokenUpdateTally: 2, HasBootstrapToken: true},
		user.ID(): {ID: user.ID(), ParentID: dev.ID(), Type: user.EnrollID.Type.String(), Enabled: true, SerialNumber: dev.SerialNumber, Topic: user.Topic, TokenUpdateTally: 1, HasBootstrapToken: true},
		ue.ID():   {ID: ue.ID(), Type: ue.EnrollID.Type.String(), Enabled: true, SerialNumber: ue.SerialNumber, Topic: ue.Topic, TokenUpdateTally: 1},
		out.ID():  {ID: out.ID(), Type: out.EnrollID.Type.String(), Enabled: false, SerialNumber: out.SerialNumber, Topic: out.Topic, TokenUpdateTally: 0},
		late.ID(): {ID: late.ID(), Type: late.EnrollID.Type.String(), Enabled: true, SerialNumber: late.SerialNumber, Topic: late.Topic, TokenUpdateTally: 1},
	}
	for _, e := range have {
		w := want[e.ID]
		seen := e.LastSeen
		e.LastSeen = time.Time{}
		if e != w {
			t.Errorf("enrollment %s:\nhave %+v\nwant %+v", e.ID, e, w)
		}
		if seen.Before(start) || seen.After(end) {
			t.Errorf("enrollment %s: last seen %v, want between %v and %v", e.ID, seen, start, end)
		}
	}

	// Pages: a cursor continues where the last page ended.
	var paged []storage.Enrollment
	cursor := ""
	for i := 0; i < 10; i++ {
		page := list(storage.EnrollmentQuery{IDs: allIDs, After: cursor, Limit: 2})
		if len(page) > 2 {
			t.Fatalf("page of limit 2 has %d enrollments", len(page))
		}
		paged = append(paged, page...)
		if len(page) < 2 {
			break
		}
		cursor = page[len(page)-1].ID
	}
	wantEnrollments(t, "paged by 2", paged, all...)
	wantEnrollments(t, "after the last ID", list(storage.EnrollmentQuery{IDs: allIDs, After: all[len(all)-1].ID()}))

	// Filters.
	yes, no := true, false
	wantEnrollments(t, "by serial number (no IDs)", list(storage.EnrollmentQuery{SerialNumber: dev.SerialNumber}), sortedChannels(dev, user)...)
	wantEnrollments(t, "by serial number and cursor", list(storage.EnrollmentQuery{SerialNumber: dev.SerialNumber, After: dev.ID()}), user)
	wantEnrollments(t, "by unknown serial number", list(storage.EnrollmentQuery{SerialNumber: "NO" + dev.SerialNumber}))
	wantEnrollments(t, "by type", list(storage.EnrollmentQuery{IDs: allIDs, Type: user.EnrollID.Type.String()}), user)
	wantEnrollments(t, "by type of User Enrollment", list(storage.EnrollmentQuery{IDs: allIDs, Type: ue.EnrollID.Type.String()}), ue)
	wantEnrollments(t, "disabled", list(storage.EnrollmentQuery{IDs: allIDs, Enabled: &no}), out)
	wantEnrollments(t, "enabled", list(storage.EnrollmentQuery{IDs: allIDs, Enabled: &yes}), sortedChannels(dev, user, ue, late)...)
	wantEnrollments(t, "last seen before the middle", list(storage.EnrollmentQuery{IDs: allIDs, LastSeenBefore: middle}), sortedChannels(dev, user, ue, out)...)
	wantEnrollments(t, "last seen after the middle", list(storage.EnrollmentQuery{IDs: allIDs, LastSeenAfter: middle}), late)
	wantEnrollments(t, "last seen before the start", list(storage.EnrollmentQuery{IDs: allIDs, LastSeenBefore: start}))
	firstEnabled := all[0]
	if firstEnabled == out {
		firstEnabled = all[1]
	}
	wantEnrollments(t, "last seen in the window", list(storage.EnrollmentQuery{IDs: allIDs, LastSeenAfter: start, LastSeenBefore: end, Enabled: &yes, Limit: 1}), firstEnabled)

	// A command report (Idle too) counts as being seen.
	pause()
	again := time.Now()
	pause()
	if err := s.StoreCommandReport(ue.Request(), ue.Idle(t)); err != nil {
		t.Fatalf("idle: %v", err)
	}
	wantEnrollments(t, "last seen after an Idle", list(storage.EnrollmentQuery{IDs: allIDs, LastSeenAfter: again}), ue)

	// Nothing matching is an empty page, not an error.
	wantEnrollments(t, "unknown IDs", list(storage.EnrollmentQuery{IDs: []string{RandomUUID(), authOnly.ID()}}))
}

// wantQueue fails the test unless have lists the want commands in order,
// each with the given NotNow count.
func wantQueue(t *testing.T, what string, have []storage.QueuedCommand, want []*mdm.Command, notNows map[string]int) {
	t.Helper()
	var h, w []string
	for _, c := range have {
		h = append(h, fmt.Sprintf("%s/%s/%s/%d", c.CommandUUID, c.RequestType, c.Status, c.NotNowCount))
	}
	for _, c := range want {
		n := notNows[c.CommandUUID]
		status := ""
		if n > 0 {
			status = mdm.StatusNotNow
		}
		w = append(w, fmt.Sprintf("%s/%s/%s/%d", c.CommandUUID, c.Command.RequestType, status, n))
	}
	if strings.Join(h, " ") != strings.Join(w, " ") {
		t.Errorf("%s:\nhave %v\nwant %v", what, h, w)
	}
}

func testListQueue(t *testing.T, s storage.AllStorage) {
	ctx := context.Background()
	lister := s
	queue := func(c *Channel, cursor string, limit int) []storage.QueuedCommand {
		t.Helper()
		have, err := lister.RetrieveQueue(ctx, c.ID(), cursor, limit)
		if err != nil {
			t.Fatalf("queue of %s (cursor %q): %v", c, cursor, err)
		}
		return have
	}

	dev := NewDevice(t)
	dev.Enroll(t, s)
	if have := queue(dev, "", 0); len(have) != 0 {
		t.Errorf("queue of a new enrollment: have %d commands, want none", len(have))
	}
	start := time.Now()
	pause()
	cmds := []*mdm.Command{
		NewCommand(t, "DeviceInformation"),
		NewBinaryCommand(t, "InstallProfile"),
		NewCommand(t, "ProfileList"),
		NewCommand(t, "SecurityInfo"),
	}
	for _, c := range cmds {
		Enqueue(t, s, c, dev)
	}
	pause()
	end := time.Now()
	// NotNow twice for the first: it stays first, flagged.
	StoreReport(t, s, dev, mdm.StatusNotNow, cmds[0].CommandUUID)
	StoreReport(t, s, dev, mdm.StatusNotNow, cmds[0].CommandUUID)
	notNows := map[string]int{cmds[0].CommandUUID: 2}

	have := queue(dev, "", 0)
	wantQueue(t, "queue", have, cmds, notNows)
	for _, c := range have {
		if c.EnqueuedAt.Before(start) || c.EnqueuedAt.After(end) {
			t.Errorf("command %s: enqueued at %v, want between %v and %v", c.CommandUUID, c.EnqueuedAt, start, end)
		}
		if c.NotNowCount > 0 && (c.NotNowAt.Before(end.Add(-time.Millisecond)) || c.NotNowAt.After(time.Now())) {
			t.Errorf("command %s: first NotNow at %v, want after %v", c.CommandUUID, c.NotNowAt, end)
		}
		if c.NotNowCount == 0 && !c.NotNowAt.IsZero() {
			t.Errorf("command %s: NotNow time %v without a NotNow", c.CommandUUID, c.NotNowAt)
		}
		if c.Cursor == "" {
			t.Errorf("command %s: no cursor", c.CommandUUID)
		}
	}

	// Pages of 3 then the rest; the cursor of an answered command still
	// works.
	page := queue(dev, "", 3)
	wantQueue(t, "first page", page, cmds[:3], notNows)
	if len(page) == 3 {
		StoreReport(t, s, dev, mdm.StatusAcknowledged, cmds[2].CommandUUID)
		wantQueue(t, "second page", queue(dev, page[2].Cursor, 3), cmds[3:], notNows)
		wantQueue(t, "from the second", queue(dev, page[0].Cursor, 0), []*mdm.Command{cmds[1], cmds[3]}, notNows)
	}

	// A final report takes the NotNow command off.
	StoreReport(t, s, dev, mdm.StatusAcknowledged, cmds[0].CommandUUID)
	wantQueue(t, "after acknowledging", queue(dev, "", 0), []*mdm.Command{cmds[1], cmds[3]}, nil)

	// Queues are per channel.
	user := dev.NewUser(t)
	user.Enroll(t, s)
	userCmd := NewCommand(t, "InstalledApplicationList")
	Enqueue(t, s, userCmd, user)
	wantQueue(t, "user channel queue", queue(user, "", 0), []*mdm.Command{userCmd}, nil)

	// Clearing (as the DELETE of the API does) empties device and users.
	if err := s.ClearQueue(dev.Request()); err != nil {
		t.Fatalf("clear queue: %v", err)
	}
	wantQueue(t, "after clearing", queue(dev, "", 0), nil, nil)
	wantQueue(t, "user after clearing the device", queue(user, "", 0), nil, nil)

	// Unknown enrollments, bad cursors.
	authOnly := NewDevice(t)
	if err := s.StoreAuthenticate(authOnly.Request(), authOnly.Authenticate(t)); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	for _, id := range []string{RandomUUID(), authOnly.ID(), "bad/id"} {
		if _, err := lister.RetrieveQueue(ctx, id, "", 0); !errors.Is(err, storage.ErrUnknownEnrollment) {
			t.Errorf("queue of %q: have error %v, want %v", id, err, storage.ErrUnknownEnrollment)
		}
	}
	if _, err := lister.RetrieveQueue(ctx, dev.ID(), "not a cursor", 0); !errors.Is(err, storage.ErrBadCursor) {
		t.Errorf("queue with a bad cursor: have error %v, want %v", err, storage.ErrBadCursor)
	}
}

// wantResult describes one expected command result.
type wantResult struct {
	c      *Channel
	report *mdm.CommandResults
}

func testCommandResults(t *testing.T, s storage.AllStorage, discards bool) {
	ctx := context.Background()
	lister := s
	results := func(uuid, after string, limit int, statusOnly bool) []storage.CommandResult {
		t.Helper()
		have, err := lister.RetrieveCommandResults(ctx, uuid, after, limit, statusOnly)
		if err != nil {
			t.Fatalf("results of %s: %v", uuid, err)
		}
		return have
	}
	check := func(what string, have []storage.CommandResult, statusOnly bool, want ...wantResult) {
		t.Helper()
		sort.Slice(want, func(i, j int) bool { return want[i].c.ID() < want[j].c.ID() })
		var h, w []string
		for _, r := range have {
			h = append(h, r.ID+"/"+r.Status)
		}
		for _, r := range want {
			w = append(w, r.c.ID()+"/"+r.report.Status)
		}
		if strings.Join(h, " ") != strings.Join(w, " ") {
			t.Errorf("%s:\nhave %v\nwant %v", what, h, w)
			return
		}
		for i, r := range have {
			switch {
			case statusOnly && r.Raw != nil:
				t.Errorf("%s: %s: raw result of %d bytes with statusOnly", what, r.ID, len(r.Raw))
			case !statusOnly && !bytes.Equal(r.Raw, want[i].report.Raw):
				t.Errorf("%s: %s: raw result differs from the report:\nhave %q\nwant %q", what, r.ID, r.Raw, want[i].report.Raw)
			}
		}
	}
	report := func(c *Channel, status, uuid string) wantResult {
		t.Helper()
		rep := c.Report(t, status, uuid)
		if err := s.StoreCommandReport(c.Request(), rep); err != nil {
			t.Fatalf("%s report from %s: %v", status, c, err)
		}
		return wantResult{c, rep}
	}

	acker, later, failer := NewDevice(t), NewDevice(t), NewDevice(t)
	acker.Binary = true // a binary plist result comes back byte for byte
	user := acker.NewUser(t)
	for _, c := range []*Channel{acker, later, failer, user} {
		c.Enroll(t, s)
	}
	cmd := NewCommand(t, "DeviceInformation")
	Enqueue(t, s, cmd, acker, later, failer, user)
	check("before any report", results(cmd.CommandUUID, "", 0, false), false)

	ack := report(acker, mdm.StatusAcknowledged, cmd.CommandUUID)
	report(later, mdm.StatusNotNow, cmd.CommandUUID)
	notNow := report(later, mdm.StatusNotNow, cmd.CommandUUID) // the latest counts
	fail := report(failer, mdm.StatusError, cmd.CommandUUID)
	// user has not answered: no result.

	want := []wantResult{ack, notNow, fail}
	if discards {
		want = []wantResult{notNow}
	}
	check("results", results(cmd.CommandUUID, "", 0, false), false, want...)
	check("statuses only", results(cmd.CommandUUID, "", 0, true), true, want...)

	// Pages of one.
	var paged []storage.CommandResult
	after := ""
	for i := 0; i < 10; i++ {
		page := results(cmd.CommandUUID, after, 1, false)
		if len(page) > 1 {
			t.Fatalf("page of limit 1 has %d results", len(page))
		}
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[0].ID
	}
	check("paged by 1", paged, false, want...)

	// A NotNow result gives way to the final one.
	done := report(later, mdm.StatusAcknowledged, cmd.CommandUUID)
	want = []wantResult{ack, done, fail}
	if discards {
		want = nil
	}
	check("after the NotNow device answered", results(cmd.CommandUUID, "", 0, false), false, want...)

	// Unknown commands have no results.
	check("unknown command", results(RandomUUID(), "", 0, false), false)
	check("malformed command UUID", results("bad/uuid", "", 0, false), false)
}

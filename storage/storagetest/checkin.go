package storagetest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

func testEnrollAndTally(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	wantTally(t, s, dev, 0)
	if err := s.StoreAuthenticate(dev.Request(), dev.Authenticate(t)); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	wantTally(t, s, dev, 0)
	tokenUpdate := func() {
		t.Helper()
		if err := s.StoreTokenUpdate(dev.Request(), dev.TokenUpdate(t)); err != nil {
			t.Fatalf("token update: %v", err)
		}
	}
	tokenUpdate()
	WantNext(t, s, dev, false, nil)
	wantTally(t, s, dev, 1)
	tokenUpdate()
	wantTally(t, s, dev, 2)

	if err := s.StoreAuthenticate(dev.Request(), dev.Authenticate(t)); err != nil {
		t.Fatalf("re-authenticate: %v", err)
	}
	wantTally(t, s, dev, 0)
	if have := migration(t, s, dev); len(have) != 0 {
		t.Errorf("migration after re-authenticate: have %v, want nothing (disabled until TokenUpdate)", have)
	}
	tokenUpdate()
	wantTally(t, s, dev, 1)
	WantNext(t, s, dev, false, nil)
}

func testUnknownEnrollmentEmpty(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	WantNext(t, s, dev, false, nil)
	WantNext(t, s, dev, true, nil)
	wantTally(t, s, dev, 0)
	if err := s.StoreCommandReport(dev.Request(), dev.Idle(t)); err != nil {
		t.Errorf("Idle report from unknown enrollment: %v", err)
	}
	WantNext(t, s, dev, false, nil)
	push, err := s.RetrievePushInfo(context.Background(), nil)
	if err != nil || len(push) != 0 {
		t.Errorf("push info for no IDs: have %v, %v; want empty, no error", push, err)
	}
}

func testRetrievePushInfo(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	user := dev.NewUser(t)
	ue := NewUserEnrollmentDevice(t)
	dev.Enroll(t, s)
	user.Enroll(t, s)
	ue.Enroll(t, s)
	authOnly := NewDevice(t)
	if err := s.StoreAuthenticate(authOnly.Request(), authOnly.Authenticate(t)); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	// A later TokenUpdate replaces the push data.
	dev.Token, dev.PushMagic = randomBytes(32), RandomUUID()
	if err := s.StoreTokenUpdate(dev.Request(), dev.TokenUpdate(t)); err != nil {
		t.Fatalf("token update: %v", err)
	}

	ids := []string{dev.ID(), user.ID(), ue.ID(), authOnly.ID(), RandomUUID(), dev.ID() + ":" + RandomUUID()}
	have, err := s.RetrievePushInfo(context.Background(), ids)
	if err != nil {
		t.Fatalf("retrieving push info: %v", err)
	}
	want := map[string]*Channel{dev.ID(): dev, user.ID(): user, ue.ID(): ue}
	for id, c := range want {
		p := have[id]
		switch {
		case p == nil:
			t.Errorf("push info for %s: missing", c)
		case p.Topic != c.Topic || p.PushMagic != c.PushMagic || !bytes.Equal(p.Token, c.Token):
			t.Errorf("push info for %s: have {%s %s %x}, want {%s %s %x}", c, p.Topic, p.PushMagic, p.Token, c.Topic, c.PushMagic, c.Token)
		}
	}
	for id := range have {
		if want[id] == nil {
			t.Errorf("push info for %s: present, want absent (no TokenUpdate)", id)
		}
	}
}

func testBootstrapToken(t *testing.T, s storage.AllStorage) {
	want := func(c *Channel, token []byte) {
		t.Helper()
		have, err := s.RetrieveBootstrapToken(c.Request(), c.GetBootstrapToken(t))
		if err != nil {
			t.Fatalf("retrieving bootstrap token of %s: %v", c, err)
		}
		switch {
		case token == nil && have != nil:
			t.Fatalf("bootstrap token of %s: have %+v, want nil", c, have)
		case token != nil && (have == nil || !bytes.Equal(have.BootstrapToken, token)):
			t.Fatalf("bootstrap token of %s: have %+v, want %x", c, have, token)
		}
	}
	set := func(c *Channel, token []byte) {
		t.Helper()
		if err := s.StoreBootstrapToken(c.Request(), c.SetBootstrapToken(t, token)); err != nil {
			t.Fatalf("storing bootstrap token of %s: %v", c, err)
		}
	}
	want(NewDevice(t), nil)

	dev := NewDevice(t)
	dev.Enroll(t, s)
	want(dev, nil)
	token := append([]byte{0x00, 0xff, 0x80}, randomBytes(64)...)
	set(dev, token)
	want(dev, token)
	set(dev, []byte{})
	want(dev, nil)
	token2 := randomBytes(32)
	set(dev, token2)
	want(dev, token2)
}

func testUserAuthenticate(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	user := dev.NewUser(t)
	dev.Enroll(t, s)
	for _, digest := range []string{"", "Digest username=\"" + user.Enrollment.UserShortName + "\""} {
		if err := s.StoreUserAuthenticate(user.Request(), user.UserAuthenticate(t, digest)); err != nil {
			t.Fatalf("user authenticate (digest %q): %v", digest, err)
		}
	}
	push, err := s.RetrievePushInfo(context.Background(), []string{user.ID()})
	if err != nil {
		t.Fatalf("retrieving push info: %v", err)
	}
	if len(push) != 0 {
		t.Errorf("push info of user after UserAuthenticate only: have %v, want none", push)
	}
	user.Enroll(t, s)
	wantTally(t, s, user, 1)
	cmd := NewCommand(t, "ProfileList")
	Enqueue(t, s, cmd, user)
	WantNext(t, s, user, false, cmd)
}

func testDisable(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	user := dev.NewUser(t)
	dev.Enroll(t, s)
	user.Enroll(t, s)
	if err := s.StoreTokenUpdate(dev.Request(), dev.TokenUpdate(t)); err != nil {
		t.Fatalf("token update: %v", err)
	}
	wantTally(t, s, dev, 2)
	wantTally(t, s, user, 1)
	enrolled := migration(t, s, dev, user)
	if len(enrolled) != 3 {
		t.Fatalf("migration of enrolled device: have %v, want Authenticate and two TokenUpdates", enrolled)
	}

	if err := s.Disable(user.Request()); !errors.Is(err, storage.ErrInvalidCheckOut) {
		t.Fatalf("disabling user channel: have error %v, want %v", err, storage.ErrInvalidCheckOut)
	}
	wantTally(t, s, dev, 2)
	wantTally(t, s, user, 1)
	wantMigration(t, migration(t, s, dev, user), enrolled)

	if err := s.Disable(dev.Request()); err != nil {
		t.Fatalf("disabling device channel: %v", err)
	}
	wantTally(t, s, dev, 0)
	wantTally(t, s, user, 0)
	if have := migration(t, s, dev, user); len(have) != 0 {
		t.Errorf("migration after disable: have %v, want nothing", have)
	}

	// The next TokenUpdate enables the device channel, not its users.
	tu := dev.TokenUpdate(t)
	if err := s.StoreTokenUpdate(dev.Request(), tu); err != nil {
		t.Fatalf("token update: %v", err)
	}
	wantTally(t, s, dev, 1)
	wantTally(t, s, user, 0)
	wantMigration(t, migration(t, s, dev, user), []migrated{
		enrolled[0],
		{mdm.MessageTokenUpdate, dev.ID(), tu.Raw},
	})
}

func testMigration(t *testing.T, s storage.AllStorage) {
	want := map[*Channel]migrationEntry{}
	var chans []*Channel
	enroll := func(dev *Channel, users ...*Channel) {
		t.Helper()
		auth := dev.Authenticate(t)
		if err := s.StoreAuthenticate(dev.Request(), auth); err != nil {
			t.Fatalf("authenticate %s: %v", dev, err)
		}
		// Two TokenUpdates: the later one is what migrates.
		var tu *mdm.TokenUpdate
		for i := 0; i < 2; i++ {
			dev.Token = randomBytes(32)
			tu = dev.TokenUpdate(t)
			if err := s.StoreTokenUpdate(dev.Request(), tu); err != nil {
				t.Fatalf("token update %s: %v", dev, err)
			}
		}
		e := migrationEntry{auth: auth.Raw, tokenUpdate: tu.Raw}
		for _, u := range users {
			tu := u.TokenUpdate(t)
			if err := s.StoreTokenUpdate(u.Request(), tu); err != nil {
				t.Fatalf("token update %s: %v", u, err)
			}
			e.users = append(e.users, migrated{mdm.MessageTokenUpdate, u.ID(), tu.Raw})
		}
		want[dev] = e
		chans = append(chans, dev)
		chans = append(chans, users...)
	}

	xml := NewDevice(t)
	xml.UnlockToken = randomBytes(64)
	enroll(xml, xml.NewUser(t), xml.NewSharediPadUser(t), xml.NewUser(t))

	bin := NewDevice(t)
	bin.Binary = true
	bin.UnlockToken = randomBytes(64)
	binUser := bin.NewUser(t)
	enroll(bin, binUser)
	if raw := bin.Authenticate(t).Raw; utf8.Valid(raw) || !strings.HasPrefix(string(raw), "bplist00") {
		t.Fatalf("test setup: binary Authenticate is not a non-UTF-8 binary plist: %q", raw)
	}

	ue := NewUserEnrollmentDevice(t)
	enroll(ue, ue.NewUser(t))

	// Neither a device that never sent TokenUpdate nor its users migrate.
	authOnly := NewDevice(t)
	if err := s.StoreAuthenticate(authOnly.Request(), authOnly.Authenticate(t)); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	chans = append(chans, authOnly)

	wantMigration(t, migration(t, s, chans...), expectedMigration(want))

	// The migration stops when its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.RetrieveMigrationCheckins(ctx, make(chan any)); err == nil {
		t.Error("migration with a cancelled context and no reader: have no error, want the context error")
	}
}

func testInvalidIDs(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	dev.Enroll(t, s)
	bad := []string{
		"",
		".",
		"..",
		"../" + dev.ID(),
		dev.ID() + "/../x",
		"a/b",
		"/etc",
		`a\b`,
		"x\x00y",
		"line\nbreak",
		"\x7f",
		strings.Repeat("a", 300),
		dev.ID() + ":" + strings.Repeat("b", 300),
		dev.ID() + ":",
		":" + dev.ID(),
		dev.ID() + ":..",
		"\xff\xfe",
	}
	cmd := NewCommand(t, "DeviceInformation")
	errs, err := s.EnqueueCommand(context.Background(), append(bad, dev.ID()), cmd)
	if err != nil {
		t.Fatalf("enqueue: have error %v, want per-ID errors only", err)
	}
	for _, id := range bad {
		if err := errs[id]; !errors.Is(err, mdm.ErrInvalidID) && !errors.Is(err, storage.ErrUnknownEnrollment) {
			t.Errorf("enqueue to %q: have error %v, want %v or %v", id, err, mdm.ErrInvalidID, storage.ErrUnknownEnrollment)
		}
	}
	if err := errs[dev.ID()]; err != nil {
		t.Errorf("enqueue to valid %s: %v", dev, err)
	}
	WantNext(t, s, dev, false, cmd)

	push, err := s.RetrievePushInfo(context.Background(), bad)
	if err != nil || len(push) != 0 {
		t.Errorf("push info for invalid IDs: have %v, %v; want empty, no error", push, err)
	}
	for _, id := range bad {
		n, err := s.RetrieveTokenUpdateTally(context.Background(), id)
		if n != 0 || (err != nil && !errors.Is(err, mdm.ErrInvalidID)) {
			t.Errorf("tally of %q: have %d, %v; want 0 and no error or %v", id, n, err, mdm.ErrInvalidID)
		}
	}
}

package file

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

func newStore(t testing.TB, dir string) *Storage {
	t.Helper()
	s, err := New(dir)
	if err != nil {
		t.Fatalf("opening file storage in %s: %v", dir, err)
	}
	return s
}

func TestStorage(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.AllStorage {
		return newStore(t, t.TempDir())
	})
}

// TestPathEscape feeds hostile IDs, CommandUUIDs, hashes and topics to
// every method and checks that nothing appears outside the storage
// directory, nor any enrollment besides the real one inside it.
func TestPathEscape(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "outer", "db")
	s := newStore(t, dir)
	ctx := context.Background()
	dev := storagetest.NewDevice(t)
	dev.Enroll(t, s)

	hostile := []string{
		"evil/../..", "../evil", "../../evil", "../../../evil", "/tmp/evil", `..\evil`,
		"evil\x00", "evil\n", "..", ".", "", strings.Repeat("evil", 75),
		dev.ID() + ":../evil", dev.ID() + ":..", dev.ID() + ":../../../evil",
		dev.ID() + ":" + strings.Repeat("evil", 75), "evil:", ":evil", "ev/il:user",
	}
	cmd := storagetest.NewCommand(t, "DeviceInformation")
	errs, err := s.EnqueueCommand(ctx, append(hostile, dev.ID()), cmd)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	for _, id := range hostile {
		if errs[id] == nil {
			t.Errorf("enqueue to %q: no error", id)
		}
	}
	if _, err := s.RetrievePushInfo(ctx, hostile); err != nil {
		t.Errorf("push info for hostile IDs: %v", err)
	}

	for _, id := range hostile {
		for _, typ := range []mdm.EnrollType{mdm.Device, mdm.User} {
			r := &mdm.Request{Context: ctx, EnrollID: &mdm.EnrollID{Type: typ, ID: id}}
			base := dev.TokenUpdate(t)
			writes := map[string]error{
				"authenticate":      s.StoreAuthenticate(r, dev.Authenticate(t)),
				"token update":      s.StoreTokenUpdate(r, base),
				"user authenticate": s.StoreUserAuthenticate(r, dev.UserAuthenticate(t, "")),
				"report":            s.StoreCommandReport(r, dev.Report(t, mdm.StatusAcknowledged, cmd.CommandUUID)),
				"idle":              s.StoreCommandReport(r, dev.Idle(t)),
				"bootstrap token":   s.StoreBootstrapToken(r, dev.SetBootstrapToken(t, []byte("tok"))),
				"associate":         s.AssociateCertHash(r, "abc123", time.Now()),
				"clear queue":       s.ClearQueue(r),
				"disable":           s.Disable(r),
			}
			for what, err := range writes {
				if err == nil {
					t.Errorf("%s with ID %q: no error", what, id)
				}
			}
			s.RetrieveNextCommand(r, false)
			s.RetrieveBootstrapToken(r, dev.GetBootstrapToken(t))
			s.RetrieveTokenUpdateTally(ctx, id)
			s.HasCertHash(r, "abc")
			s.EnrollmentHasCertHash(r, "abc")
		}
	}
	// CommandUUIDs, hashes and topics become single file names.
	for _, bad := range []string{
		"../evil", "../../evil", "/tmp/evil", `..\evil`, "evil/../..", "evil\x00", "evil\n",
		"..", ".", "", strings.Repeat("evil", 75), tempPrefix + "evil",
	} {
		if err := s.AssociateCertHash(dev.Request(), bad, time.Now()); err == nil {
			t.Errorf("associating hash %q: no error", bad)
		}
		s.HasCertHash(dev.Request(), bad)
		s.IsCertHashAssociated(dev.Request(), bad)
		badCmd, err := mdm.NewCommand(bad, "DeviceInformation", nil)
		if err != nil {
			t.Fatalf("building command: %v", err)
		}
		if _, err := s.EnqueueCommand(ctx, []string{dev.ID()}, badCmd); err == nil {
			t.Errorf("enqueue of CommandUUID %q: no error", bad)
		}
		if bad != "" && bad != "." && bad != ".." { // "..pem" and "...pem" are harmless
			pemCert, pemKey := storagetest.NewPushCert(t, bad)
			if err := s.StorePushCert(ctx, pemCert, pemKey); err == nil {
				t.Errorf("storing push cert of topic %q: no error", bad)
			}
		}
		s.RetrievePushCert(ctx, bad)
		s.IsPushCertStale(ctx, bad, "x")
	}

	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if strings.Contains(strings.ToLower(path), "evil") {
			t.Errorf("hostile input created %s", rel)
		}
		switch {
		case rel == "." || rel == "outer" || rel == filepath.Join("outer", "db"):
		case !strings.HasPrefix(rel, filepath.Join("outer", "db")+string(filepath.Separator)):
			t.Errorf("file outside the storage directory: %s", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, enrollmentsDir))
	if err != nil {
		t.Fatalf("listing enrollments: %v", err)
	}
	if len(entries) != 1 || entries[0].Name() != dev.ID() {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("enrollment directories: have %q, want only %q", names, dev.ID())
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, enrollmentsDir, dev.ID(), usersDir)); len(entries) != 0 {
		t.Errorf("user channel directories of %s: have %d, want none", dev.ID(), len(entries))
	}
	storagetest.WantNext(t, s, dev, false, cmd)
}

// TestReopen checks that a store reopened over the same directory sees the
// same queue in the same order, NotNow state included.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	dev := storagetest.NewDevice(t)
	user := dev.NewUser(t)
	dev.Enroll(t, s)
	user.Enroll(t, s)
	var cmds []*mdm.Command
	for i := 0; i < 10; i++ {
		cmd := storagetest.NewCommand(t, "DeviceInformation")
		if i == 4 {
			cmd = storagetest.NewBinaryCommand(t, "InstallProfile")
		}
		storagetest.Enqueue(t, s, cmd, dev)
		cmds = append(cmds, cmd)
	}
	userCmd := storagetest.NewCommand(t, "ProfileList")
	storagetest.Enqueue(t, s, userCmd, user)
	storagetest.StoreReport(t, s, dev, mdm.StatusAcknowledged, cmds[0].CommandUUID)
	storagetest.StoreReport(t, s, dev, mdm.StatusError, cmds[1].CommandUUID)
	storagetest.StoreReport(t, s, dev, mdm.StatusNotNow, cmds[2].CommandUUID)
	pemCert, pemKey := storagetest.NewPushCert(t, storagetest.NewTopic())
	if err := s.StorePushCert(context.Background(), pemCert, pemKey); err != nil {
		t.Fatalf("storing push cert: %v", err)
	}

	s = newStore(t, dir)
	storagetest.WantNext(t, s, user, false, userCmd)
	storagetest.WantNext(t, s, dev, true, cmds[3])
	for _, cmd := range cmds[2:] {
		storagetest.WantNext(t, s, dev, false, cmd)
		storagetest.StoreReport(t, s, dev, mdm.StatusAcknowledged, cmd.CommandUUID)
	}
	storagetest.WantNext(t, s, dev, false, nil)
	if n, err := s.RetrieveTokenUpdateTally(context.Background(), dev.ID()); n != 1 || err != nil {
		t.Errorf("tally after reopening: have %d, %v; want 1", n, err)
	}
	if _, err := s.EnqueueCommand(context.Background(), []string{dev.ID()}, cmds[0]); !errors.Is(err, storage.ErrDuplicateCommand) {
		t.Errorf("enqueueing an old command after reopening: have error %v, want %v", err, storage.ErrDuplicateCommand)
	}
}

// TestUnlockToken checks what the storage interfaces cannot show: a
// TokenUpdate without an UnlockToken keeps the one stored before.
func TestUnlockToken(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	dev := storagetest.NewDevice(t)
	first := []byte("\x00unlock\xfftoken")
	dev.UnlockToken = first
	dev.Enroll(t, s)
	dev.UnlockToken = nil
	if err := s.StoreTokenUpdate(dev.Request(), dev.TokenUpdate(t)); err != nil {
		t.Fatalf("token update: %v", err)
	}
	path := filepath.Join(dir, enrollmentsDir, dev.ID(), unlockTokenFile)
	if have, err := os.ReadFile(path); err != nil || !bytes.Equal(have, first) {
		t.Errorf("unlock token after TokenUpdate without one: have %q, %v; want %q", have, err, first)
	}
	dev.UnlockToken = []byte("second")
	if err := s.StoreTokenUpdate(dev.Request(), dev.TokenUpdate(t)); err != nil {
		t.Fatalf("token update: %v", err)
	}
	if have, err := os.ReadFile(path); err != nil || !bytes.Equal(have, dev.UnlockToken) {
		t.Errorf("unlock token after a new one: have %q, %v; want %q", have, err, dev.UnlockToken)
	}
}

// TestLeftoverTempFiles plants the temporary files a crash could leave
// and checks that reads ignore them.
func TestLeftoverTempFiles(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	dev := storagetest.NewDevice(t)
	user := dev.NewUser(t)
	dev.Enroll(t, s)
	user.Enroll(t, s)
	cmd := storagetest.NewCommand(t, "ProfileList")
	storagetest.Enqueue(t, s, cmd, dev)

	devDir := filepath.Join(dir, enrollmentsDir, dev.ID())
	for _, p := range []string{
		filepath.Join(dir, tempPrefix+"1"),
		filepath.Join(dir, enrollmentsDir, tempPrefix+"2"),
		filepath.Join(devDir, tempPrefix+"3"),
		filepath.Join(devDir, usersDir, tempPrefix+"4"),
		filepath.Join(dir, commandsDir, tempPrefix+"5"),
		filepath.Join(dir, certAuthDir, dev.ID(), tempPrefix+"6"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), dirMode); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("torn"), fileMode); err != nil {
			t.Fatal(err)
		}
	}

	s = newStore(t, dir)
	storagetest.WantNext(t, s, dev, false, cmd)
	if has, err := s.EnrollmentHasCertHash(dev.Request(), ""); has || err != nil {
		t.Errorf("EnrollmentHasCertHash with only a temporary file: have %v, %v; want false", has, err)
	}
	ch := make(chan any, 10)
	if err := s.RetrieveMigrationCheckins(context.Background(), ch); err != nil {
		t.Fatalf("migration: %v", err)
	}
	if len(ch) != 3 {
		t.Errorf("migration sent %d messages, want 3 (device Authenticate and TokenUpdate, user TokenUpdate)", len(ch))
	}
	if err := s.ClearQueue(dev.Request()); err != nil {
		t.Errorf("clearing queue: %v", err)
	}
}

func TestNewRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "0000-SOME-UDID"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := New(dir); !errors.Is(err, ErrUnknownLayout) {
		t.Errorf("opening a directory of another layout: have error %v, want %v", err, ErrUnknownLayout)
	}
	if err := os.WriteFile(filepath.Join(dir, formatFile), []byte("nanomdm-file-storage 99\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(dir); !errors.Is(err, ErrUnknownLayout) {
		t.Errorf("opening a directory of a newer format: have error %v, want %v", err, ErrUnknownLayout)
	}
}

func TestModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "db")
	s, err := New(dir, WithSync(true))
	if err != nil {
		t.Fatalf("opening storage: %v", err)
	}
	storagetest.NewDevice(t).Enroll(t, s)
	topic := storagetest.NewTopic()
	pemCert, pemKey := storagetest.NewPushCert(t, topic)
	if err := s.StorePushCert(context.Background(), pemCert, pemKey); err != nil {
		t.Fatalf("storing push cert: %v", err)
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fileMode
		if d.IsDir() {
			want = dirMode
		}
		if have := info.Mode().Perm(); have != want {
			t.Errorf("%s: mode %v, want %v", path, have, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, pushCertsDir, topic+".pem")); err != nil {
		t.Errorf("push certificate file: %v", err)
	}
}

func BenchmarkCommandLoop(b *testing.B) {
	for _, tc := range []struct {
		name string
		sync bool
	}{{"NoSync", false}, {"Sync", true}} {
		b.Run(tc.name, func(b *testing.B) {
			s, err := New(b.TempDir(), WithSync(tc.sync))
			if err != nil {
				b.Fatalf("opening storage: %v", err)
			}
			storagetest.BenchmarkCommandLoop(b, s)
		})
	}
}

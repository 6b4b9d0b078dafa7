package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/storage"
)

func testEnqueueToUnknownEnrollment(t *testing.T, s storage.AllStorage) {
	enrolled := NewDevice(t)
	enrolled.Enroll(t, s)
	authOnly := NewDevice(t)
	if err := s.StoreAuthenticate(authOnly.Request(), authOnly.Authenticate(t)); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	unknown := RandomUUID()
	cmd := NewCommand(t, "ProfileList")

	errs, err := s.EnqueueCommand(context.Background(), []string{unknown, enrolled.ID(), authOnly.ID()}, cmd)
	if err != nil {
		t.Fatalf("enqueue: have error %v, want per-ID errors only", err)
	}
	for _, id := range []string{unknown, authOnly.ID()} {
		if !errors.Is(errs[id], storage.ErrUnknownEnrollment) {
			t.Errorf("enqueue to %s (never sent TokenUpdate): have error %v, want %v", id, errs[id], storage.ErrUnknownEnrollment)
		}
	}
	if err := errs[enrolled.ID()]; err != nil {
		t.Errorf("enqueue to enrolled %s: %v", enrolled.ID(), err)
	}
	if len(errs) != 2 {
		t.Errorf("enqueue: have %d per-ID errors %v, want 2", len(errs), errs)
	}
	WantNext(t, s, enrolled, false, cmd)
	WantNext(t, s, authOnly, false, nil)
}

// testNothingEnqueuedStoresNothing enqueues a command that no ID takes:
// its CommandUUID stays free, and the same command then reaches a device.
func testNothingEnqueuedStoresNothing(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	dev.Enroll(t, s)
	cmd := NewCommand(t, "ProfileList")
	for _, ids := range [][]string{{RandomUUID(), RandomUUID()}, nil} {
		errs, err := s.EnqueueCommand(context.Background(), ids, cmd)
		if err != nil || len(errs) != len(ids) {
			t.Fatalf("enqueue to %q: have %v, %v; want one per-ID error each", ids, errs, err)
		}
	}
	if errs, err := s.EnqueueCommand(context.Background(), []string{dev.ID()}, cmd); err != nil || errs != nil {
		t.Fatalf("enqueue again after nothing was enqueued: have %v, %v; want success", errs, err)
	}
	WantNext(t, s, dev, false, cmd)
}

func testFIFO(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	dev.Enroll(t, s)
	cmds := make([]*mdm.Command, 20)
	for i := range cmds {
		if i == 7 {
			cmds[i] = NewBinaryCommand(t, "InstallProfile")
		} else {
			cmds[i] = NewCommand(t, fmt.Sprintf("Request%02d", i))
		}
		Enqueue(t, s, cmds[i], dev)
	}
	for _, cmd := range cmds {
		WantNext(t, s, dev, false, cmd)
		StoreReport(t, s, dev, mdm.StatusAcknowledged, cmd.CommandUUID)
	}
	WantNext(t, s, dev, false, nil)
}

func testReportRemovesCommand(t *testing.T, s storage.AllStorage) {
	for _, status := range []string{
		mdm.StatusAcknowledged,
		mdm.StatusError,
		mdm.StatusCommandFormatError,
		"SomeFutureStatus",
	} {
		t.Run(status, func(t *testing.T) {
			dev := NewDevice(t)
			dev.Enroll(t, s)
			first, second := NewCommand(t, "DeviceInformation"), NewCommand(t, "SecurityInfo")
			Enqueue(t, s, first, dev)
			Enqueue(t, s, second, dev)
			WantNext(t, s, dev, false, first)
			StoreReport(t, s, dev, status, first.CommandUUID)
			WantNext(t, s, dev, false, second)
			StoreReport(t, s, dev, status, second.CommandUUID)
			WantNext(t, s, dev, false, nil)
		})
	}
}

func testIdleStoresNothing(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	dev.Enroll(t, s)
	StoreReport(t, s, dev, mdm.StatusIdle, "")
	WantNext(t, s, dev, false, nil)
	cmd := NewCommand(t, "DeviceInformation")
	Enqueue(t, s, cmd, dev)
	StoreReport(t, s, dev, mdm.StatusIdle, "")
	WantNext(t, s, dev, false, cmd)
	WantNext(t, s, dev, true, cmd)
	StoreReport(t, s, dev, mdm.StatusIdle, "")
	WantNext(t, s, dev, false, cmd)
}

func testNotNow(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	dev.Enroll(t, s)
	a, b := NewCommand(t, "InstallApplication"), NewCommand(t, "DeviceInformation")
	Enqueue(t, s, a, dev)
	Enqueue(t, s, b, dev)

	WantNext(t, s, dev, false, a)
	StoreReport(t, s, dev, mdm.StatusNotNow, a.CommandUUID)
	// The report was NotNow: the loop skips NotNow commands.
	WantNext(t, s, dev, true, b)
	// Any other report re-offers it, ahead of later commands.
	WantNext(t, s, dev, false, a)

	StoreReport(t, s, dev, mdm.StatusAcknowledged, b.CommandUUID)
	WantNext(t, s, dev, true, nil)
	WantNext(t, s, dev, false, a)

	StoreReport(t, s, dev, mdm.StatusNotNow, a.CommandUUID)
	WantNext(t, s, dev, true, nil)
	StoreReport(t, s, dev, mdm.StatusIdle, "")
	WantNext(t, s, dev, false, a)
	StoreReport(t, s, dev, mdm.StatusAcknowledged, a.CommandUUID)
	WantNext(t, s, dev, false, nil)
	WantNext(t, s, dev, true, nil)
}

func testClearQueue(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	user := dev.NewUser(t)
	dev.Enroll(t, s)
	user.Enroll(t, s)
	devCmd, userCmd := NewCommand(t, "ProfileList"), NewCommand(t, "ProfileList")
	Enqueue(t, s, devCmd, dev)
	Enqueue(t, s, userCmd, user)

	if err := s.ClearQueue(user.Request()); err != nil {
		t.Fatalf("clearing user queue: %v", err)
	}
	WantNext(t, s, user, false, nil)
	WantNext(t, s, dev, false, devCmd)

	userCmd2 := NewCommand(t, "ProfileList")
	Enqueue(t, s, userCmd2, user)
	StoreReport(t, s, dev, mdm.StatusNotNow, devCmd.CommandUUID)
	if err := s.ClearQueue(dev.Request()); err != nil {
		t.Fatalf("clearing device queue: %v", err)
	}
	WantNext(t, s, dev, false, nil)
	WantNext(t, s, user, false, nil)
}

func testAuthenticateClearsQueues(t *testing.T, s storage.AllStorage) {
	dev := NewDevice(t)
	user := dev.NewUser(t)
	ipadUser := dev.NewSharediPadUser(t)
	for _, c := range []*Channel{dev, user, ipadUser} {
		c.Enroll(t, s)
	}
	old := NewCommand(t, "ProfileList")
	Enqueue(t, s, old, dev, user, ipadUser)
	notNow := NewCommand(t, "InstallApplication")
	Enqueue(t, s, notNow, dev)
	StoreReport(t, s, dev, mdm.StatusNotNow, old.CommandUUID)

	if err := s.StoreAuthenticate(dev.Request(), dev.Authenticate(t)); err != nil {
		t.Fatalf("re-authenticate: %v", err)
	}
	for _, c := range []*Channel{dev, user, ipadUser} {
		WantNext(t, s, c, false, nil)
	}

	for _, c := range []*Channel{dev, user, ipadUser} {
		if err := s.StoreTokenUpdate(c.Request(), c.TokenUpdate(t)); err != nil {
			t.Fatalf("token update %s: %v", c, err)
		}
	}
	fresh := NewCommand(t, "DeviceInformation")
	Enqueue(t, s, fresh, dev, user, ipadUser)
	for _, c := range []*Channel{dev, user, ipadUser} {
		WantNext(t, s, c, false, fresh)
	}
}

func testUserChannelQueues(t *testing.T, s storage.AllStorage) {
	for _, tc := range []struct {
		name string
		user func(t *testing.T) *Channel
	}{
		{"User", func(t *testing.T) *Channel { return NewDevice(t).NewUser(t) }},
		{"SharediPad", func(t *testing.T) *Channel { return NewDevice(t).NewSharediPadUser(t) }},
		{"UserEnrollment", func(t *testing.T) *Channel { return NewUserEnrollmentDevice(t).NewUser(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := tc.user(t)
			dev := user.Parent()
			dev.Enroll(t, s)
			user.Enroll(t, s)
			devCmd, userCmd := NewCommand(t, "DeviceInformation"), NewCommand(t, "ProfileList")
			Enqueue(t, s, devCmd, dev)
			Enqueue(t, s, userCmd, user)

			WantNext(t, s, dev, false, devCmd)
			WantNext(t, s, user, false, userCmd)

			wantReportError(t, s, user, mdm.StatusAcknowledged, devCmd.CommandUUID, storage.ErrUnknownCommand)
			StoreReport(t, s, user, mdm.StatusIdle, "")
			StoreReport(t, s, user, mdm.StatusAcknowledged, userCmd.CommandUUID)
			WantNext(t, s, user, false, nil)
			WantNext(t, s, dev, false, devCmd)

			wantReportError(t, s, dev, mdm.StatusAcknowledged, userCmd.CommandUUID, storage.ErrUnknownCommand)
			StoreReport(t, s, dev, mdm.StatusAcknowledged, devCmd.CommandUUID)
			WantNext(t, s, dev, false, nil)
		})
	}
}

func testUnknownCommandReport(t *testing.T, s storage.AllStorage) {
	a, b := NewDevice(t), NewDevice(t)
	a.Enroll(t, s)
	b.Enroll(t, s)
	cmd := NewCommand(t, "DeviceInformation")
	Enqueue(t, s, cmd, a)

	for _, status := range []string{mdm.StatusAcknowledged, mdm.StatusNotNow, mdm.StatusError} {
		wantReportError(t, s, b, status, cmd.CommandUUID, storage.ErrUnknownCommand)
		wantReportError(t, s, a, status, RandomUUID(), storage.ErrUnknownCommand)
	}
	never := NewDevice(t)
	wantReportError(t, s, never, mdm.StatusAcknowledged, cmd.CommandUUID, storage.ErrUnknownCommand)

	WantNext(t, s, b, false, nil)
	WantNext(t, s, a, false, cmd)
	WantNext(t, s, a, true, cmd)
}

func testEnqueueToManyIDs(t *testing.T, s storage.AllStorage) {
	devs := make([]*Channel, 50)
	for i := range devs {
		devs[i] = NewDevice(t)
		devs[i].Enroll(t, s)
	}
	cmd := NewCommand(t, "DeviceInformation")
	Enqueue(t, s, cmd, devs...)
	for i := len(devs) - 1; i >= 0; i-- {
		WantNext(t, s, devs[i], false, cmd)
		StoreReport(t, s, devs[i], mdm.StatusAcknowledged, cmd.CommandUUID)
		WantNext(t, s, devs[i], false, nil)
		if i > 0 {
			WantNext(t, s, devs[0], false, cmd)
		}
	}
}

func testDuplicateCommandUUID(t *testing.T, s storage.AllStorage) {
	a, b := NewDevice(t), NewDevice(t)
	a.Enroll(t, s)
	b.Enroll(t, s)
	cmd := NewCommand(t, "DeviceInformation")
	Enqueue(t, s, cmd, a)

	other, err := mdm.NewCommand(cmd.CommandUUID, "EraseDevice", nil)
	if err != nil {
		t.Fatalf("building command: %v", err)
	}
	for _, tc := range []struct {
		name string
		cmd  *mdm.Command
		ids  []string
	}{
		{"same command, other device", cmd, []string{b.ID()}},
		{"same command, same device", cmd, []string{a.ID()}},
		{"other command, same UUID", other, []string{b.ID(), a.ID()}},
	} {
		_, err := s.EnqueueCommand(context.Background(), tc.ids, tc.cmd)
		if !errors.Is(err, storage.ErrDuplicateCommand) {
			t.Errorf("%s: have error %v, want %v", tc.name, err, storage.ErrDuplicateCommand)
		}
	}
	WantNext(t, s, b, false, nil)
	WantNext(t, s, a, false, cmd)
	StoreReport(t, s, a, mdm.StatusAcknowledged, cmd.CommandUUID)
	WantNext(t, s, a, false, nil)
}

func testConcurrentEnqueue(t *testing.T, s storage.AllStorage) {
	const workers, perWorker = 8, 25
	dev := NewDevice(t)
	dev.Enroll(t, s)
	cmds := make([][]*mdm.Command, workers)
	for w := range cmds {
		for i := 0; i < perWorker; i++ {
			cmds[w] = append(cmds[w], NewCommand(t, fmt.Sprintf("W%dC%d", w, i)))
		}
	}
	var wg sync.WaitGroup
	for w := range cmds {
		wg.Add(1)
		go func(mine []*mdm.Command) {
			defer wg.Done()
			for _, cmd := range mine {
				errs, err := s.EnqueueCommand(context.Background(), []string{dev.ID()}, cmd)
				if err == nil {
					err = errs[dev.ID()]
				}
				if err != nil {
					t.Errorf("enqueue %s: %v", cmd.CommandUUID, err)
				}
			}
		}(cmds[w])
	}
	wg.Wait()

	// Drain. Each worker's commands were enqueued one after another, so
	// they must come back in that order.
	worker, index := map[string]int{}, map[string]int{}
	for w := range cmds {
		for i, cmd := range cmds[w] {
			worker[cmd.CommandUUID], index[cmd.CommandUUID] = w, i
		}
	}
	seen := map[string]bool{}
	last := make([]int, workers)
	for i := range last {
		last[i] = -1
	}
	for n := 0; ; n++ {
		if n > workers*perWorker {
			t.Fatalf("queue still not empty after %d acknowledgements", n)
		}
		cmd, err := s.RetrieveNextCommand(dev.Request(), false)
		if err != nil {
			t.Fatalf("next command: %v", err)
		}
		if cmd == nil {
			break
		}
		if seen[cmd.CommandUUID] {
			t.Fatalf("command %s delivered again after acknowledgement", cmd.CommandUUID)
		}
		seen[cmd.CommandUUID] = true
		w, ok := worker[cmd.CommandUUID]
		if !ok {
			t.Fatalf("next command %s was never enqueued", cmd.CommandUUID)
		}
		if index[cmd.CommandUUID] <= last[w] {
			t.Errorf("worker %d: command %d came after command %d", w, index[cmd.CommandUUID], last[w])
		}
		last[w] = index[cmd.CommandUUID]
		StoreReport(t, s, dev, mdm.StatusAcknowledged, cmd.CommandUUID)
	}
	if len(seen) != workers*perWorker {
		t.Errorf("drained %d distinct commands, want %d", len(seen), workers*perWorker)
	}
}

func testConcurrentCommandLoop(t *testing.T, s storage.AllStorage) {
	const commands, workers = 40, 4
	dev := NewDevice(t)
	dev.Enroll(t, s)
	all := map[string]bool{}
	for i := 0; i < commands; i++ {
		cmd := NewCommand(t, "DeviceInformation")
		Enqueue(t, s, cmd, dev)
		all[cmd.CommandUUID] = true
	}

	var (
		mu        sync.Mutex
		acked     = map[string]bool{} // acknowledgements that completed
		delivered = map[string]bool{}
	)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			report := dev.Idle(t)
			for n := 0; n <= 2*commands; n++ {
				err := s.StoreCommandReport(dev.Request(), report)
				// Another worker may have acknowledged the same command.
				if err != nil && !errors.Is(err, storage.ErrUnknownCommand) {
					t.Errorf("storing %s report: %v", report.Status, err)
					return
				}
				mu.Lock()
				if report.Status == mdm.StatusAcknowledged {
					acked[report.CommandUUID] = true
				}
				before := make(map[string]bool, len(acked))
				for k := range acked {
					before[k] = true
				}
				mu.Unlock()

				cmd, err := s.RetrieveNextCommand(dev.Request(), false)
				if err != nil {
					t.Errorf("next command: %v", err)
					return
				}
				if cmd == nil {
					return
				}
				if before[cmd.CommandUUID] {
					t.Errorf("command %s delivered after its acknowledgement completed", cmd.CommandUUID)
					return
				}
				if !all[cmd.CommandUUID] {
					t.Errorf("command %s was never enqueued", cmd.CommandUUID)
					return
				}
				mu.Lock()
				delivered[cmd.CommandUUID] = true
				mu.Unlock()
				report = dev.Report(t, mdm.StatusAcknowledged, cmd.CommandUUID)
			}
			t.Errorf("worker still receiving commands after %d rounds", 2*commands)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(delivered) != commands || len(acked) != commands {
		t.Errorf("delivered %d and acknowledged %d commands, want %d", len(delivered), len(acked), commands)
	}
	WantNext(t, s, dev, false, nil)
}

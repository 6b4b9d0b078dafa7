package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/nanomdm/nanomdm/mdm"
	"github.com/nanomdm/nanomdm/mdm/simulator"
	"github.com/nanomdm/nanomdm/storage/storagetest"
)

// hostile is device-supplied text that would run script if a page
// trusted it.
const hostile = `<img src=x onerror="document.title='pwned'">`

// browser starts headless Chromium (from the distribution's package:
// .ci/test.sh installs it) with a fresh profile and returns a context
// for driving it. Chromium's dialogs (confirm) are accepted.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (apt-get install chromium): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		// chromedp loses track of a page restored from the back-forward
		// cache; the pages are fetched again, as they are without it.
		chromedp.Flag("disable-features", "Translate,BlinkGenPropertyTrees,BackForwardCache"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	ctx, cancelTimeout := context.WithTimeout(ctx, time.Minute)
	t.Cleanup(cancelTimeout)
	return ctx
}

// shots saves full-page screenshots into a directory kept after the
// test, for people to look at.
type shots struct {
	t   *testing.T
	dir string
}

func newShots(t *testing.T) *shots {
	dir, err := os.MkdirTemp("", "nanomdm-console-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return &shots{t: t, dir: dir}
}

func (s *shots) take(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		// The page's script has run (times are in the viewer's zone).
		if err := chromedp.Do(ctx, chromedp.WaitReady(chromedp.CSS("html.js"))); err != nil {
			return err
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(s.dir, name+".png"), png, 0o644)
	})
}

// TestConsoleFlag: -ui needs -api (operators sign in with the key), and
// without -ui there is no console.
func TestConsoleFlag(t *testing.T) {
	err := run(context.Background(), []string{"nanomdm", "-listen", "127.0.0.1:0", "-ca", "unused.pem", "-ui", "-storage", "inmem"},
		func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-ui needs -api") {
		t.Errorf("-ui without -api: have %v, want an error naming -api", err)
	}
	s := startServer(t)
	req, _ := http.NewRequest(http.MethodGet, s.url+"/ui/", nil)
	req.SetBasicAuth("nanomdm", testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/ui/ without -ui: have %d, want 404", resp.StatusCode)
	}
}

// TestConsoleInBrowser drives the console in headless Chromium against a
// server with simulated devices: sign in, find a device, send a command
// and see the device's answer, remove a queued command, upload a push
// certificate. Device-supplied markup must stay text throughout.
func TestConsoleInBrowser(t *testing.T) {
	s := startServer(t, "-ui")
	ctx := browser(t)
	shot := newShots(t)

	// A small fleet: devices, a user channel and a Shared iPad user whose
	// name is markup; one device whose serial number is markup.
	tr := &simulator.Transport{URL: s.url + "/mdm"}
	dctx := context.Background()
	var devices []*simulator.Device
	for i := 0; i < 4; i++ {
		id, err := s.ca.Issue("console device")
		if err != nil {
			t.Fatal(err)
		}
		d := simulator.NewDevice(tr, id)
		if i == 3 {
			d.Serial = hostile
		}
		if err := d.Enroll(dctx); err != nil {
			t.Fatalf("enrolling: %v", err)
		}
		devices = append(devices, d)
	}
	dev := devices[0]
	for _, u := range []*simulator.Channel{dev.User("A1B2C3D4-0000-1111-2222-333344445555", "alex"), dev.User(mdm.SharediPadUserID, hostile)} {
		if err := u.TokenUpdate(dctx); err != nil {
			t.Fatalf("user token update: %v", err)
		}
	}

	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Signing in: the console sends a stranger to the sign-in form, which
	// refuses a wrong key and then takes the right one.
	run("opening the console", chromedp.Navigate(s.url+"/ui/enrollments"), chromedp.WaitVisible(chromedp.ID("#key")))
	run("wrong key", chromedp.SendKeys(chromedp.ID("#key"), "not-the-key"), chromedp.Submit(chromedp.ID("#key")),
		chromedp.WaitVisible(chromedp.CSS(".flash.bad")))
	if have := text(".flash.bad"); !strings.Contains(have, "not the API key") {
		t.Errorf("wrong key: page says %q", have)
	}
	run("sign-in page", shot.take("01-sign-in"))
	run("signing in", chromedp.SendKeys(chromedp.ID("#key"), testAPIKey), chromedp.Submit(chromedp.ID("#key")),
		chromedp.WaitVisible(chromedp.CSS("table.list")))
	url, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(url, "/ui/enrollments") {
		t.Errorf("after sign-in: at %s, want the page first asked for", url)
	}
	run("enrollments page", shot.take("03-enrollments"))
	if have := text("table.list tbody"); !strings.Contains(have, hostile) {
		t.Errorf("enrollments list does not show the hostile serial number as text: %q", have)
	}

	// The overview.
	run("overview", chromedp.Navigate(s.url+"/ui/"), chromedp.WaitVisible(chromedp.CSS(".tiles")), shot.take("02-overview"))
	if have := text(".tiles"); !strings.Contains(have, "6\nenrollments") && !strings.Contains(have, "6 enrollments") && !strings.Contains(have, "6enrollments") {
		t.Errorf("overview tiles: have %q, want 6 enrollments", have)
	}

	// Find a device by serial number from the header's search box.
	run("searching", chromedp.SendKeys(chromedp.CSS("header .find input"), devices[1].Serial+"\n"),
		chromedp.WaitVisible(chromedp.CSS("table.list")))
	if have := text("table.list tbody"); !strings.Contains(have, devices[1].UDID()) || strings.Contains(have, dev.UDID()) {
		t.Errorf("search by serial: have %q, want only %s", have, devices[1].UDID())
	}

	// The enrollment page of the device with the hostile user channel.
	run("enrollment page", chromedp.Navigate(s.url+"/ui/enrollments/"+dev.UDID()), chromedp.WaitVisible(chromedp.CSS("h1.id")))
	if have := text(".facts"); !strings.Contains(have, dev.UDID()+":"+hostile) {
		t.Errorf("enrollment facts do not list the hostile user channel as text: %q", have)
	}

	// Send a command from a template; the device answers it.
	run("choosing a template", chromedp.SetValue(chromedp.CSS(`select[name="template"]`), "DeviceInformation"),
		chromedp.Submit(chromedp.CSS(`select[name="template"]`)),
		chromedp.WaitReady(chromedp.CSS(`form.command input[name="template"][value="DeviceInformation"]`)))
	run("template form", shot.take("04-enrollment-template"))
	run("queueing", chromedp.Click(chromedp.CSS(`form.command button.primary`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	queued := text("main")
	if !strings.Contains(queued, "DeviceInformation") || !strings.Contains(queued, "Command queued") {
		t.Fatalf("after queueing: page says %q", queued)
	}
	run("queued", shot.take("05-enrollment-queued"))
	got, err := dev.Channel.Drain(dctx, dev.Channel.RealisticAcknowledge, 5)
	if err != nil || len(got) != 1 || got[0].Command.RequestType != "DeviceInformation" {
		t.Fatalf("device received %v, %v; want one DeviceInformation", got, err)
	}
	run("command page", chromedp.Click(chromedp.CSS(`.flash.ok a`)), chromedp.WaitVisible(chromedp.CSS("details.result")),
		shot.take("06-command-result"))
	if have := text("details.result"); !strings.Contains(have, "Acknowledged") || !strings.Contains(have, "QueryResponses") {
		t.Errorf("command result: have %q, want Acknowledged with QueryResponses", have)
	}
	// The browser's back button returns to the enrollment (no resubmission).
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any]("history.back()")); err != nil {
		t.Fatalf("going back: %v", err)
	}
	run("back", chromedp.WaitVisible(chromedp.CSS("h1.id")))
	if url, _ := chromedp.Run(ctx, chromedp.Location()); !strings.Contains(url, "/ui/enrollments/"+dev.UDID()+"?sent=") {
		t.Errorf("back: at %s, want the enrollment page", url)
	}

	// The enrollment page now shows the answer, pretty-printed, and the
	// identity certificate the device authenticated with.
	run("enrollment with result", chromedp.Navigate(s.url+"/ui/enrollments/"+dev.UDID()), chromedp.WaitVisible(chromedp.CSS("details.result")),
		chromedp.WaitVisible(chromedp.CSS("details.result pre.plist")))
	if have := text("details.result"); !strings.Contains(have, "DeviceInformation") || !strings.Contains(have, "Acknowledged") || !strings.Contains(have, "<key>QueryResponses</key>") {
		t.Errorf("recent results on the enrollment page: have %q, want the acknowledged DeviceInformation with its plist", have)
	}
	if have := text(".facts"); !strings.Contains(have, "console device") || !strings.Contains(have, "expires") {
		t.Errorf("enrollment facts lack the identity certificate: %q", have)
	}
	// (Chromium paints a scrolled box below the window only once seen.)
	run("enrollment detail", chromedp.ScrollIntoView(chromedp.CSS("details.result pre.plist")), shot.take("07-enrollment-detail"))

	// Queue two raw plists without push; remove one with its own
	// button, then the rest with the queue's.
	for _, uuid := range []string{"console-raw-1", "console-raw-2"} {
		cmd, err := mdm.NewCommand(uuid, "ProfileList", nil)
		if err != nil {
			t.Fatal(err)
		}
		run("raw form", chromedp.Navigate(s.url+"/ui/enrollments/"+dev.UDID()), chromedp.WaitVisible(chromedp.CSS("h1.id")),
			chromedp.Click(chromedp.CSS(`details.raw summary`)),
			chromedp.SetValue(chromedp.ID("#plist"), string(cmd.Raw)),
			chromedp.Click(chromedp.CSS(`details.raw form.command input[name="push"]`)),
			chromedp.Click(chromedp.CSS(`details.raw form.command button.primary`)),
			chromedp.WaitVisible(chromedp.CSS(`table.list a[href*="`+uuid+`"]`)))
	}
	if have := text("table.list tbody"); !strings.Contains(have, "console-raw-1") || !strings.Contains(have, "console-raw-2") || !strings.Contains(have, "ProfileList") {
		t.Errorf("queue after raw plists: %q", have)
	}
	run("queue", shot.take("08-enrollment-queue"))
	run("removing one", chromedp.Click(chromedp.CSS(`form[action*="/queue/console-raw-1/remove"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`.flash.ok`)))
	if have := text("main"); !strings.Contains(have, "Removed console-raw-1 from the queue") {
		t.Errorf("after removing one: page says %q", have)
	}
	if have := text("table.list tbody"); strings.Contains(have, "console-raw-1") || !strings.Contains(have, "console-raw-2") {
		t.Errorf("queue after removing console-raw-1: %q", have)
	}
	run("removed one", shot.take("09-enrollment-removed"))
	run("removing all", chromedp.Click(chromedp.CSS(`form[action$="/queue/clear"] button`)), chromedp.WaitVisible(chromedp.CSS("table.list td.empty")))
	if have := text("table.list tbody"); !strings.Contains(have, "Nothing queued") {
		t.Errorf("queue after removing all: %q", have)
	}
	if next, err := dev.Channel.Idle(dctx); err != nil || next != nil {
		t.Errorf("device after removal: have %v, %v; want nothing queued", next, err)
	}

	// Upload a push certificate for the simulated devices' topic.
	certPEM, keyPEM := storagetest.NewPushCert(t, simulator.DefaultTopic)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "push.pem"), filepath.Join(dir, "push.key")
	if err := os.WriteFile(certPath, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	run("push certificate page", chromedp.Navigate(s.url+"/ui/pushcert"), chromedp.WaitVisible(chromedp.ID("#cert")),
		shot.take("10-pushcert-missing"),
		chromedp.SetUploadFiles(chromedp.ID("#cert"), []string{certPath}),
		chromedp.SetUploadFiles(chromedp.ID("#key"), []string{keyPath}),
		chromedp.Submit(chromedp.ID("#cert")),
		chromedp.WaitVisible(chromedp.CSS(".flash.ok")),
		shot.take("11-pushcert-stored"))
	if have := text("main"); !strings.Contains(have, "Stored the push certificate for "+simulator.DefaultTopic) {
		t.Errorf("after upload: page says %q", have)
	}

	// The overview now shows the answered command and the stored certificate.
	run("overview after", chromedp.Navigate(s.url+"/ui/"), chromedp.WaitVisible(chromedp.CSS("svg.chart")), shot.take("12-overview"))
	if have := text("main"); strings.Contains(have, "no certificate stored") || !strings.Contains(have, "Acknowledged 1") {
		t.Errorf("overview after: want the certificate valid and one Acknowledged result, page says %q", have)
	}

	// Nothing device-supplied ran as script.
	run("list again", chromedp.Navigate(s.url+"/ui/enrollments"), chromedp.WaitVisible(chromedp.CSS("table.list")))
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(title, "pwned") {
		t.Errorf("device-supplied markup ran: title %q", title)
	}
}

package docs_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/nanomdm/nanomdm/mdm"
)

// readmeNanoctl are the nanoctl steps of the README, as written there;
// TestReadmeNanoctl runs them against the built server.
var readmeNanoctl = []string{
	"export NANOCTL_URL=http://localhost:9000 NANOCTL_KEY=devkey",
	"go run ./cmd/nanoctl enqueue -nopush -t DeviceInformation 1111-2222",
	"go run ./cmd/nanoctl enrollments",
	"go run ./cmd/nanoctl results -raw COMMAND-UUID",
}

// TestReadmeNanoctl follows the README's nanoctl steps with the built
// server, simulator and nanoctl, then the guide's enqueue example with
// an unknown ID, whose answer must be the one the guide prints.
func TestReadmeNanoctl(t *testing.T) {
	readme := string(readRepoFile(t, "README.md"))
	for _, c := range readmeNanoctl {
		if !strings.Contains(readme, c) {
			t.Errorf("README.md no longer shows %q: update it or this test so they agree", c)
		}
	}
	server, sim, ctl := commandBinary(t, "nanomdm"), commandBinary(t, "mdmsim"), commandBinary(t, "nanoctl")
	dir := t.TempDir()
	dev := filepath.Join(dir, "dev")
	runTool(t, sim, "ca", "-out", dev)
	srv := startNanoMDM(t, server, "-ca", filepath.Join(dev, "ca.pem"), "-api", "devkey", "-storage-dsn", filepath.Join(dir, "db"))
	runTool(t, sim, "device", "-url", srv.url+"/mdm", "-ca", dev, "-udid", "1111-2222")
	conf := filepath.Join(dir, "nanoctl.conf")
	if err := os.WriteFile(conf, []byte("url = "+srv.url+"\nkey = devkey\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out := runTool(t, ctl, "-config", conf, "enqueue", "-nopush", "-t", "DeviceInformation", "1111-2222")
	m := regexp.MustCompile(`command (\S+) DeviceInformation`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "1111-2222") {
		t.Fatalf("nanoctl enqueue printed\n%s\nwant the command's UUID and the ID", out)
	}
	uuid := m[1]
	out = runTool(t, sim, "device", "-url", srv.url+"/mdm", "-ca", dev, "-udid", "1111-2222", "-enroll=false")
	if !strings.Contains(out, "acknowledged DeviceInformation "+uuid) {
		t.Errorf("mdmsim device printed %q, want it to acknowledge %s", out, uuid)
	}
	if out = runTool(t, ctl, "-config", conf, "enrollments"); !strings.Contains(out, "1111-2222") {
		t.Errorf("nanoctl enrollments printed\n%s\nwant 1111-2222", out)
	}
	out = runTool(t, ctl, "-config", conf, "results", "-raw", uuid)
	if !strings.Contains(out, "Acknowledged") || !strings.Contains(out, "QueryResponses") {
		t.Errorf("nanoctl results -raw printed\n%s\nwant the Acknowledged report with its QueryResponses", out)
	}

	// The guide's /v1/enqueue example, with its answer.
	guide := string(readRepoFile(t, "docs/operations-guide.md"))
	example := regexp.MustCompile(`(?m)^    (\{"status":\{"UNKNOWN-ID".*\})$`).FindStringSubmatch(guide)
	if example == nil {
		t.Fatal("docs/operations-guide.md no longer shows the enqueue answer for UNKNOWN-ID")
	}
	var want map[string]any
	if err := json.Unmarshal([]byte(example[1]), &want); err != nil {
		t.Fatalf("the guide's enqueue answer is not JSON: %v", err)
	}
	cmd, err := mdm.NewCommand(want["command_uuid"].(string), "ProfileList", nil)
	if err != nil {
		t.Fatal(err)
	}
	status, answer := do(t, http.MethodPut, srv.url+"/v1/enqueue/1111-2222,UNKNOWN-ID?nopush=1", cmd.Raw, "nanomdm", "devkey", nil)
	var have map[string]any
	if err := json.Unmarshal([]byte(answer), &have); err != nil || status != http.StatusMultiStatus || !reflect.DeepEqual(have, want) {
		t.Errorf("enqueue to 1111-2222,UNKNOWN-ID answered %d %s, the guide says 207 %s", status, answer, example[1])
	}
}

// TestDocsUseDistinctCommandUUIDs checks that following the README, the
// quickstart and the guide one after another never enqueues a
// CommandUUID twice (which the server answers 409).
func TestDocsUseDistinctCommandUUIDs(t *testing.T) {
	uuid := regexp.MustCompile(`[0-9a-f]{8}-0000-4000-8000-[0-9]{12}`)
	seen := map[string]string{}
	for _, f := range []string{"README.md", "docs/quickstart.md", "docs/operations-guide.md"} {
		for u := range uniq(uuid.FindAllString(string(readRepoFile(t, f)), -1)) {
			if other, ok := seen[u]; ok {
				t.Errorf("CommandUUID %s is in both %s and %s: following both gives a 409", u, other, f)
			}
			seen[u] = f
		}
	}
	if len(seen) < 3 {
		t.Errorf("found only the CommandUUIDs %v: the pattern no longer matches the docs", seen)
	}
}

func uniq(ss []string) map[string]bool {
	out := map[string]bool{}
	for _, s := range ss {
		out[s] = true
	}
	return out
}

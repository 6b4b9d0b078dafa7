package docs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// ciModule is a module whose tests pass, fail or skip as CI_MODE says.
var ciModule = map[string]string{
	"go.mod": "module example.com/ci\n\ngo 1.22\n",
	"a/a_test.go": `package a

import (
	"os"
	"testing"
)

func TestGood(t *testing.T) { t.Log("all fine") }

func TestMaybe(t *testing.T) {
	switch os.Getenv("CI_MODE") {
	case "fail":
		t.Log("the failing test's own log line")
		t.Run("sub", func(t *testing.T) { t.Error("boom in a subtest") })
	case "skip":
		t.Skip("no database here")
	}
}
`,
}

// runSummary runs go test -json on ciModule in mode and returns what
// .ci/testsummary.py prints and its exit code.
func runSummary(t *testing.T, dir, mode string) (string, int) {
	t.Helper()
	log := filepath.Join(dir, mode+".json")
	out, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	gotest := exec.Command(goTool(t), "test", "-count=1", "-json", "./...")
	gotest.Dir, gotest.Stdout, gotest.Stderr = dir, out, out
	gotest.Env = append(os.Environ(), "CI_MODE="+mode, "GOFLAGS=-mod=mod")
	status := 0
	if err := gotest.Run(); err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("go test: %v", err)
		}
		status = ee.ExitCode()
	}
	out.Close()
	summary := exec.Command(python3(t), repoFile(t, ".ci/testsummary.py"), log, strconv.Itoa(status))
	b, err := summary.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("testsummary.py: %v", err)
	}
	return string(b), code
}

// TestCISummary checks the summary .ci/test.sh prints: a failing test's
// own log lines are shown, skips fail CI, and a good run ends with the
// count of passed tests.
func TestCISummary(t *testing.T) {
	dir := t.TempDir()
	for name, text := range ciModule {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, code := runSummary(t, dir, "fail")
	for _, want := range []string{"FAIL\texample.com/ci/a", "the failing test's own log line", "boom in a subtest", "TestMaybe/sub"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary of a failing run lacks %q:\n%s", want, out)
		}
	}
	if code != 1 || strings.Contains(out, "all fine") {
		t.Errorf("failing run: exit %d, want 1, and no output of passing tests:\n%s", code, out)
	}
	if out, code = runSummary(t, dir, "skip"); code != 3 || !strings.Contains(out, "TestMaybe") || !strings.Contains(out, "no database here") {
		t.Errorf("skipping run: exit %d, want 3 naming the skipped test and why:\n%s", code, out)
	}
	if out, code = runSummary(t, dir, "pass"); code != 0 || !strings.HasSuffix(strings.TrimSpace(out), "PASSED 2") {
		t.Errorf("good run: exit %d, want 0 and a last line PASSED 2:\n%s", code, out)
	}
}

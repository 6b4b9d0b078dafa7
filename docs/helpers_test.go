package docs_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The tests of this package read the repository around them: the module
// root is the parent of this directory.

// repoRoot returns the absolute path of the module root.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatalf("finding the module root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s has no go.mod: %v", root, err)
	}
	return root
}

// repoFile returns the path of a file of the repository, given with
// slashes relative to the module root.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	return filepath.Join(repoRoot(t), filepath.FromSlash(rel))
}

// readRepoFile returns the content of a repository file.
func readRepoFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoFile(t, rel))
	if err != nil {
		t.Fatalf("reading %s: %v", rel, err)
	}
	return b
}

// python3 returns the path of the Python 3 interpreter that runs
// tools/cmdr.py. It is part of the documented tool set, so its absence
// fails the test.
func python3(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed to test tools/cmdr.py and was not found on PATH: %v", err)
	}
	return p
}

// goTool returns the path of the go command.
func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("the go command was not found on PATH nor in $GOROOT/bin")
	return ""
}

// The commands of this module, each built once per test binary into binDir.
var (
	buildMu  sync.Mutex
	binDir   string
	builtErr = map[string]error{}
)

// TestMain removes the built commands afterwards.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// optionalCommands are checked when their directory exists: they are
// being added by other work.
var optionalCommands = []string{"nano2nano"}

// hasCommand reports whether cmd/NAME exists.
func hasCommand(t *testing.T, name string) bool {
	t.Helper()
	_, err := os.Stat(repoFile(t, "cmd/"+name))
	return err == nil
}

// commandBinary builds cmd/NAME once and returns the binary's path.
func commandBinary(t *testing.T, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if binDir == "" {
		dir, err := os.MkdirTemp("", "nanomdm-docs-bin-")
		if err != nil {
			t.Fatalf("creating a directory for the commands: %v", err)
		}
		binDir = dir
	}
	bin := filepath.Join(binDir, name)
	err, done := builtErr[name]
	if !done {
		cmd := exec.Command(goTool(t), "build", "-o", bin, "./cmd/"+name)
		cmd.Dir = repoRoot(t)
		if out, e := cmd.CombinedOutput(); e != nil {
			err = fmt.Errorf("go build ./cmd/%s: %v\n%s", name, e, out)
		}
		builtErr[name] = err
	}
	if err != nil {
		t.Fatalf("building the command: %v", err)
	}
	return bin
}

package docs_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// flagLine matches a flag in the -h output of our commands
// ("  -NAME (env NANOMDM_NAME) default …", see cmd/internal/cli.Usage) and
// in the standard library's format ("  -NAME type").
var flagLine = regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9_.-]*)`)

// commandFlags runs a built command with -h and returns its flag names.
func commandFlags(t *testing.T, bin string) []string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, "-h")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = cleanEnv()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s -h: %v\n%s", filepath.Base(bin), err, out.String())
	}
	var names []string
	for _, m := range flagLine.FindAllStringSubmatch(out.String(), -1) {
		names = append(names, m[1])
	}
	if len(names) == 0 {
		t.Fatalf("%s -h printed no flags:\n%s", filepath.Base(bin), out.String())
	}
	sort.Strings(names)
	return names
}

// cleanEnv is the environment without NANOMDM_* variables, so that a
// developer's settings do not change what the commands do under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NANOMDM_") {
			env = append(env, kv)
		}
	}
	return env
}

// envName is the environment variable of a flag (cmd/internal/cli.EnvName).
func envName(flag string) string {
	return "NANOMDM_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// TestGuideDocumentsEveryFlag fails when a flag of cmd/nanomdm or
// cmd/nano2nano is missing from docs/operations-guide.md: each must
// appear as `-NAME` together with its environment variable NANOMDM_NAME.
func TestGuideDocumentsEveryFlag(t *testing.T) {
	guide := string(readRepoFile(t, "docs/operations-guide.md"))
	for _, name := range append([]string{"nanomdm"}, optionalCommands...) {
		if !hasCommand(t, name) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			var noFlag, noEnv []string
			for _, f := range commandFlags(t, commandBinary(t, name)) {
				if !strings.Contains(guide, "`-"+f+"`") {
					noFlag = append(noFlag, "-"+f)
				}
				if !strings.Contains(guide, envName(f)) {
					noEnv = append(noEnv, envName(f))
				}
			}
			if len(noFlag) > 0 {
				t.Errorf("docs/operations-guide.md does not document these flags of %s (as `-NAME`): %s", name, strings.Join(noFlag, " "))
			}
			if len(noEnv) > 0 {
				t.Errorf("docs/operations-guide.md does not name the environment variables of these flags of %s: %s", name, strings.Join(noEnv, " "))
			}
		})
	}
}

// TestDeployExamplesUseRealFlags checks that every NANOMDM_* variable and
// every flag given to nanomdm in docs/deploy/ exists.
func TestDeployExamplesUseRealFlags(t *testing.T) {
	flags := map[string]bool{}
	for _, f := range commandFlags(t, commandBinary(t, "nanomdm")) {
		flags[f] = true
	}
	envs := map[string]bool{}
	for f := range flags {
		envs[envName(f)] = true
	}
	files, err := filepath.Glob(repoFile(t, "docs/deploy/*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deployment examples in docs/deploy: %v", err)
	}
	envRef := regexp.MustCompile(`NANOMDM_[A-Z0-9_]+`)
	// A flag on a command line that runs the server: "nanomdm … -flag".
	cmdLine := regexp.MustCompile(`(?m)^.*\bnanomdm\b(.*)$`)
	flagRef := regexp.MustCompile(`(?:^|\s|")-([a-z][a-z0-9-]*)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("reading %s: %v", f, err)
		}
		rel := "docs/deploy/" + filepath.Base(f)
		for _, v := range envRef.FindAllString(string(b), -1) {
			if !envs[v] {
				t.Errorf("%s: %s is not the environment variable of any nanomdm flag", rel, v)
			}
		}
		for _, line := range cmdLine.FindAllStringSubmatch(string(b), -1) {
			if !strings.Contains(line[0], "ExecStart") && !strings.Contains(line[0], "ENTRYPOINT") && !strings.Contains(line[0], "CMD") {
				continue
			}
			for _, m := range flagRef.FindAllStringSubmatch(line[1], -1) {
				if !flags[m[1]] {
					t.Errorf("%s: nanomdm has no flag -%s (line %q)", rel, m[1], strings.TrimSpace(line[0]))
				}
			}
		}
	}
}

// TestGuideDocumentsNanoctl fails when a command or flag of cmd/nanoctl
// is missing from docs/operations-guide.md: every command as
// `nanoctl NAME`, every flag (global or a command's) as `-NAME`.
func TestGuideDocumentsNanoctl(t *testing.T) {
	guide := string(readRepoFile(t, "docs/operations-guide.md"))
	bin := commandBinary(t, "nanoctl")
	help := runTool(t, bin, "help")
	_, list, ok := strings.Cut(help, "commands:\n")
	if !ok {
		t.Fatalf("nanoctl help has no commands: section:\n%s", help)
	}
	list, _, _ = strings.Cut(list, "\n\n")
	var commands []string
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			commands = append(commands, f[0])
		}
	}
	if len(commands) < 10 {
		t.Fatalf("found only commands %v in nanoctl help:\n%s", commands, help)
	}
	flags := map[string]bool{}
	for _, f := range commandFlags(t, bin) {
		flags[f] = true
	}
	for _, name := range commands {
		if name == "version" {
			continue
		}
		if !strings.Contains(guide, "`nanoctl "+name) {
			t.Errorf("docs/operations-guide.md does not show the nanoctl command %s (as `nanoctl %s …`)", name, name)
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, name, "-h")
		cmd.Stdout, cmd.Stderr, cmd.Env = &out, &out, cleanEnv()
		if err := cmd.Run(); err != nil || !strings.Contains(out.String(), "usage: nanoctl "+name) {
			t.Errorf("nanoctl %s -h: %v, want its usage\n%s", name, err, out.String())
		}
		for _, m := range flagLine.FindAllStringSubmatch(out.String(), -1) {
			flags[m[1]] = true
		}
	}
	for f := range flags {
		if !strings.Contains(guide, "`-"+f+"`") {
			t.Errorf("docs/operations-guide.md does not document the nanoctl flag -%s (as `-%s`)", f, f)
		}
	}
	for _, env := range []string{"NANOCTL_URL", "NANOCTL_KEY", "NANOCTL_CONFIG"} {
		if !strings.Contains(guide, env) {
			t.Errorf("docs/operations-guide.md does not name %s", env)
		}
	}
}

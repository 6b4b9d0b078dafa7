// Package cli holds what the commands of this module share on their
// command line: the main function, environment fallbacks for flags, the usage text, the
// repeatable string flag, and opening a storage backend from the
// -storage, -storage-dsn and -storage-options values.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

// EnvPrefix starts the environment variable of every flag.
const EnvPrefix = "NANOMDM_"

// EnvName is the environment variable that sets flag name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// StringList is a repeatable string flag.
type StringList []string

func (s *StringList) String() string { return strings.Join(*s, ",") }

// Set appends v.
func (s *StringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// ApplyEnv sets every flag not given on the command line from its
// environment variable, if that is set: the command line beats the
// environment, which beats the default.
func ApplyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment %s: %w", EnvName(f.Name), e)
			}
		}
	})
	return err
}

// Usage returns a flag.FlagSet Usage function that prints every flag with
// its environment variable and default to w.
func Usage(fs *flag.FlagSet, w io.Writer) func() {
	return func() {
		fmt.Fprintf(w, "Usage of %s:\n", filepath.Base(fs.Name()))
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(w, "  -%s (env %s)", f.Name, EnvName(f.Name))
			if f.DefValue != "" {
				fmt.Fprintf(w, " default %q", f.DefValue)
			}
			fmt.Fprintf(w, "\n    \t%s\n", f.Usage)
		})
	}
}

// Main runs a command: run gets a context cancelled by SIGINT or SIGTERM.
// -h exits 0; any other error is printed after the command's name and
// exits 1.
func Main(name string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

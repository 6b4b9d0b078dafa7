package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// envPrefix starts the environment variable of every flag.
const envPrefix = "NANOMDM_"

// envName is the environment variable that sets flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if that is set: the command line beats the
// environment, which beats the default.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment %s: %w", envName(f.Name), e)
			}
		}
	})
	return err
}

// usage prints every flag with its environment variable and default.
func usage(fs *flag.FlagSet, w io.Writer) func() {
	return func() {
		fmt.Fprintf(w, "Usage of %s:\n", fs.Name())
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(w, "  -%s (env %s)", f.Name, envName(f.Name))
			if f.DefValue != "" {
				fmt.Fprintf(w, " default %q", f.DefValue)
			}
			fmt.Fprintf(w, "\n    \t%s\n", f.Usage)
		})
	}
}

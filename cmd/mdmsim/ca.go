package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/nanomdm/nanomdm/mdm/simulator"
)

// runCA writes a new CA into a directory, keeping an existing one.
func runCA(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mdmsim ca", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("out", "dev", "directory for ca.pem and ca.key")
	cn := fs.String("cn", "nanomdm throwaway device CA", "common name of the CA")
	force := fs.Bool("force", false, "replace an existing CA")
	keyType := fs.String("key-type", "rsa", "CA key: rsa (2048-bit; needed by nanomdm's embedded SCEP server, -scep-ca-key) or ecdsa (P-256)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	certPath, keyPath := caPaths(*dir)
	if _, err := os.Stat(certPath); err == nil && !*force {
		fmt.Fprintf(stdout, "keeping existing CA %s\n", certPath)
		return nil
	}
	var ca *simulator.CA
	var err error
	switch *keyType {
	case "rsa":
		ca, err = simulator.NewRSACA(*cn)
	case "ecdsa":
		ca, err = simulator.NewCA(*cn)
	default:
		return fmt.Errorf("-key-type %q: want rsa or ecdsa", *keyType)
	}
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", *dir, err)
	}
	if err := ca.WriteFiles(certPath, keyPath); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s (for trials only: use your own CA in production)\n", certPath, keyPath)
	return nil
}

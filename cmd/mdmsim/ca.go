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
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	certPath, keyPath := caPaths(*dir)
	if _, err := os.Stat(certPath); err == nil && !*force {
		fmt.Fprintf(stdout, "keeping existing CA %s\n", certPath)
		return nil
	}
	ca, err := simulator.NewCA(*cn)
	if err != nil {
		return err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", *dir, err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("writing CA key: %w", err)
	}
	if err := os.WriteFile(certPath, ca.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("writing CA certificate: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s and %s (for trials only: production devices get identities from your SCEP CA)\n", certPath, keyPath)
	return nil
}

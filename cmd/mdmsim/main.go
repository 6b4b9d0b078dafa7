// Command mdmsim plays Apple devices against a nanomdm server. It creates
// throwaway CAs for trying the server, and enrolls simulated devices that
// answer the commands queued for them.
//
//	mdmsim ca -out DIR                  write DIR/ca.pem and DIR/ca.key
//	mdmsim device -url URL -ca DIR ...  enroll devices and answer their commands
//	mdmsim device -enroll-url URL       enroll through the enrollment profile and SCEP
//	mdmsim load -url URL -api-key KEY   measure a server with a simulated fleet
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nanomdm/nanomdm/cmd/internal/cli"
)

var version = "unknown"

func main() {
	cli.Main("mdmsim", func(ctx context.Context) error {
		return run(ctx, os.Args, os.Stdout, os.Stderr)
	})
}

const usageText = `usage: mdmsim COMMAND [flags]

commands:
  ca       create a throwaway device-identity CA (for trying the server)
  device   enroll simulated devices and answer their queued commands
  load     play a fleet against a server: enroll, enqueue, answer, verify, measure
  version  print the version
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		fmt.Fprint(stderr, usageText)
		return errors.New("no command given")
	}
	switch args[1] {
	case "ca":
		return runCA(args[1:], stdout, stderr)
	case "device":
		return runDevice(ctx, args[1:], stdout, stderr)
	case "load":
		return runLoad(ctx, args[1:], stdout, stderr)
	case "version", "-version":
		fmt.Fprintf(stdout, "mdmsim %s\n", version)
		return nil
	case "-h", "-help", "help":
		fmt.Fprint(stdout, usageText)
		return nil
	}
	fmt.Fprint(stderr, usageText)
	return fmt.Errorf("unknown command %q", args[1])
}

// caPaths returns the certificate and key paths of a CA directory.
func caPaths(dir string) (cert, key string) {
	return filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
}

// Command ssf is the secure software factory. All of its behaviour lives in internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ssf-dev/ssf/internal/cli"
)

func main() {
	// A closed terminal or pipe must not kill ssf before it has removed its containers and temporary files: hang-ups
	// cancel like Ctrl-C, and writes to a closed pipe fail instead of killing the process.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

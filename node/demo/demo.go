package demo

import (
	"context"
	"errors"
	"io"
	"log/slog"
)

// Config configures a demo run.
type Config struct {
	Domains   int  // number of domains (default 2: pastry, can)
	Nodes     int  // nodes per domain (default 3)
	KillProxy bool // kill the callee domain's proxy mid-demo to show failover
	Logger    *slog.Logger
}

// Run runs the demo and prints its ladder diagram to out.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	return errors.New("demo: not implemented yet")
}

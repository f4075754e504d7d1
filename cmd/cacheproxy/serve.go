package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/cacheproxy/cacheproxy/config"
)

// serve runs the proxy for cfg until ctx is cancelled (SIGTERM or SIGINT),
// logging to log. It returns nil after a clean stop.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	return errors.New("proxy not wired yet")
}

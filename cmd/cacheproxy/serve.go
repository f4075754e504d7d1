package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// serve runs the proxy for cfg until ctx is cancelled (SIGTERM or SIGINT),
// logging to log. It returns nil after a clean stop.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	p, err := proxy.New(cfg, proxy.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	if err := p.Run(ctx); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	return nil
}

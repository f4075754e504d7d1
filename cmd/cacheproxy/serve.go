package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// runtimeHeadroom is what the Go memory limit allows beyond max_memory: the
// proxy's own state (connections, buffers, requests in flight).
const runtimeHeadroom = 256 << 20

// serve runs the proxy for cfg until ctx is cancelled (SIGTERM or SIGINT),
// logging to log. It returns nil after a clean stop. onListen, if not nil,
// is called once every listener is up (tests use it).
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, onListen func(addrs []string)) error {
	// The Go heap may grow to twice what is live before the next
	// collection. Tie the runtime's soft memory limit to max_memory (plus
	// room for the proxy's own state), so replies held up to max_memory do
	// not take the process to twice that. GOMEMLIMIT, when set, wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.MemoryBudget() + runtimeHeadroom)
	}
	p, err := proxy.New(cfg, proxy.Options{Logger: log, OnListen: onListen})
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	var adm *admin.Server
	if cfg.Admin.Listen != "" || cfg.Stats.Listen != "" {
		adm, err = admin.New(admin.Options{
			Addr: cfg.Admin.Listen, StatsAddr: cfg.Stats.Listen, Config: cfg, Source: p,
			Logger: log, Version: proxy.Version,
		})
		if err != nil {
			return fmt.Errorf("admin: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	admErr := make(chan error, 1)
	if adm != nil {
		go func() { admErr <- adm.Run(ctx) }()
	} else {
		admErr <- nil
	}
	err = p.Run(ctx)
	cancel() // the proxy stopped (drained or failed): stop the admin listener too
	if aerr := <-admErr; aerr != nil && err == nil {
		err = fmt.Errorf("admin: %w", aerr)
	} else if err != nil {
		err = fmt.Errorf("proxy: %w", err)
	}
	return err
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// runtimeHeadroom is what the Go memory limit allows beyond max_memory: the
// proxy's own state (connections, buffers, requests in flight).
const runtimeHeadroom = 256 << 20

// serveOptions are serve's optional parts.
type serveOptions struct {
	// onListen, if not nil, is called once every listener is up (tests use
	// it).
	onListen func(addrs []string)
	// reload, if not nil, reloads the configuration: serve attaches the
	// proxy and the admin server to it and serves POST /reload. If nil,
	// the configuration is fixed.
	reload *reloadManager
	// hash identifies the configuration file's bytes for the metrics.
	hash string
	// watch, if not nil, triggers a reload when the file changes.
	watch *fileWatcher
}

// serve runs the proxy for cfg until ctx is cancelled (SIGTERM or SIGINT),
// logging to log. It returns nil after a clean stop.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger, so serveOptions) error {
	if so.watch != nil {
		defer so.watch.close() // run closes it too; closing twice is harmless
	}
	// The Go heap may grow to twice what is live before the next
	// collection. Tie the runtime's soft memory limit to max_memory (plus
	// room for the proxy's own state), so replies held up to max_memory do
	// not take the process to twice that. GOMEMLIMIT, when set, wins.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.MemoryBudget() + runtimeHeadroom)
	}
	p, err := proxy.New(cfg, proxy.Options{Logger: log, OnListen: so.onListen})
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	// The admin server runs even with both of its listeners off, so that a
	// reload can turn them on.
	ao := admin.Options{
		Addr: cfg.Admin.Listen, StatsAddr: cfg.Stats.Listen, Config: cfg, Source: p,
		Token: cfg.Admin.Token, Pprof: cfg.Admin.Pprof,
		Logger: log, Version: proxy.Version,
	}
	if so.reload != nil {
		ao.Reload = so.reload.reloadHTTP
	}
	adm, err := admin.New(ao)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if so.reload != nil {
		so.reload.attach(p, adm, cfg, so.hash)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	if so.watch != nil && so.reload != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			so.watch.run(ctx, func() { _, _ = so.reload.reload(triggerWatch, true) })
		}()
	}
	admErr := make(chan error, 1)
	go func() { admErr <- adm.Run(ctx) }()
	err = p.Run(ctx)
	cancel() // the proxy stopped (drained or failed): stop the admin listener too
	if aerr := <-admErr; aerr != nil && err == nil {
		err = fmt.Errorf("admin: %w", aerr)
	} else if err != nil {
		err = fmt.Errorf("proxy: %w", err)
	}
	return err
}

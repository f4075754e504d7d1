package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// reloader applies a configuration to the running proxy without dropping
// clients: cfg has passed validation; an error means nothing was applied,
// and says what cannot change live and why. *proxy.Proxy implements it;
// tests use fakes.
type reloader interface {
	Reload(cfg *config.Config) error
}

var _ reloader = (*proxy.Proxy)(nil)

// loaded is a configuration file read as the command line says: parsed,
// validated, with the command-line listeners applied.
type loaded struct {
	// cfg is the configuration; nil when the file has problems.
	cfg *config.Config
	// warns are the file's warnings.
	warns []config.Warning
	// hash identifies the file's bytes: the first 12 hex digits of their
	// SHA-256 ("" if the file could not be read).
	hash string
	// statsDefault is applyFlags' report: a nutcracker.yml got the default
	// stats listener.
	statsDefault bool
}

// loadConfig reads o.confFile and applies the command line to it, as both
// -t and a reload do. The error is what -t prints: the file's problems, one
// per line as file:line: pool: key: reason, or why it could not be read.
// The result is not nil when the file could be read, even with an error.
func loadConfig(o options) (*loaded, error) {
	data, err := os.ReadFile(o.confFile)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	sum := sha256.Sum256(data)
	l := &loaded{hash: hex.EncodeToString(sum[:])[:12]}
	cfg, warns, err := config.Parse(o.confFile, data)
	l.warns = warns
	if err != nil {
		return l, err
	}
	if l.statsDefault, err = applyFlags(cfg, o); err != nil {
		return l, err
	}
	l.cfg = cfg
	return l, nil
}

// Reload triggers, as they are logged.
const (
	triggerSIGHUP = "SIGHUP"
	triggerHTTP   = "POST /reload"
	triggerWatch  = "watch"
)

// reloadManager reloads the configuration file: it loads and validates it
// as -t does, moves the admin and stats listeners, has the proxy apply it,
// and keeps the metrics. Reloads run one at a time, whatever asks for them.
type reloadManager struct {
	opts     options          // the command line: the file and the flags that override it
	log      *slog.Logger     // where every reload's outcome goes
	resolver config.Resolver  // for the host-name warnings; nil is the default resolver
	now      func() time.Time // the clock for the last-success metric (tests fix it)

	mu           sync.Mutex // one reload at a time; guards what follows
	proxy        reloader   // nil when the proxy cannot reload
	admin        *admin.Server
	cur          *config.Config // the configuration in use
	statsDropped bool           // the default stats address was taken at start: stats stay off
	lastSeen     string         // the file as last read: its hash, or why it could not be read
}

// newReloadManager returns a manager for the configuration l, loaded at
// start as o says. attach gives it the proxy and admin server.
func newReloadManager(o options, l *loaded, log *slog.Logger, r config.Resolver) *reloadManager {
	return &reloadManager{opts: o, log: log, resolver: r, now: time.Now, cur: l.cfg, lastSeen: l.hash}
}

// attach gives m the running proxy (nil if it cannot reload) and admin
// server, and records the configuration in use in the metrics.
func (m *reloadManager) attach(p reloader, adm *admin.Server, cfg *config.Config, hash string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.proxy, m.admin, m.cur = p, adm, cfg
	adm.ConfigLoaded(hash, m.now())
}

// reloadHTTP is admin.Options.Reload.
func (m *reloadManager) reloadHTTP(context.Context) (string, error) {
	return m.reload(triggerHTTP, false)
}

// reload loads the file and applies what changed: validate (as -t), bind
// the new admin and stats listeners, have the proxy apply the rest, then
// switch the listeners. If any step fails nothing is applied, the reason is
// logged and counted, and the error is an *admin.ReloadError: 400 when the
// file does not load, 409 when it cannot be applied. On success it returns
// the one-line summary of what changed ("no change" is a success). With
// onlyIfChanged (--watch), a file whose bytes (or read error) are those of
// the last reload is left alone, and the summary is "".
func (m *reloadManager) reload(trigger string, onlyIfChanged bool) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	file := m.opts.confFile
	l, err := loadConfig(m.opts)
	seen := "unreadable: " + fmt.Sprint(err)
	if l != nil {
		seen = l.hash
	}
	if onlyIfChanged && seen == m.lastSeen {
		return "", nil
	}
	m.lastSeen = seen
	if l != nil {
		for _, w := range l.warns {
			m.log.Warn("configuration", "trigger", trigger, "warning", w.String())
		}
	}
	if m.admin == nil {
		return "", m.refuse(trigger, http.StatusConflict, errors.New("the proxy is still starting: try again once it listens"), "")
	}
	if err != nil {
		return "", m.refuse(trigger, http.StatusBadRequest, err, "")
	}
	cfg := l.cfg
	if l.statsDefault && m.statsDropped {
		cfg.Stats.Listen = ""
	}
	changes := config.Diff(m.cur, cfg)
	summary := changes.String()
	if len(changes) > 0 {
		for _, w := range checkHosts(cfg, m.resolver) {
			m.log.Warn("configuration", "trigger", trigger, "warning", w.String())
		}
		mv, err := m.admin.MoveListeners(cfg.Admin.Listen, cfg.Stats.Listen)
		if err != nil {
			return "", m.refuse(trigger, http.StatusConflict, err, summary)
		}
		if m.proxy == nil {
			mv.Abort()
			return "", m.refuse(trigger, http.StatusConflict, errors.New("this build of the proxy cannot apply a configuration live: restart it"), summary)
		}
		if err := m.proxy.Reload(cfg); err != nil {
			mv.Abort()
			return "", m.refuse(trigger, http.StatusConflict, err, summary)
		}
		mv.Commit()
		m.admin.SetConfig(cfg)
		if cfg.MaxMemory != m.cur.MaxMemory && os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(cfg.MemoryBudget() + runtimeHeadroom)
		}
		m.cur = cfg
	}
	m.admin.ConfigLoaded(l.hash, m.now())
	m.admin.CountReload(true)
	m.log.Info("configuration reloaded", "trigger", trigger, "file", file, "hash", l.hash, "changes", summary)
	return summary, nil
}

// refuse logs and counts a reload that changed nothing and returns err
// with its HTTP status. A file's problems are logged one per record, each
// as -t prints it (file:line: pool: key: reason).
func (m *reloadManager) refuse(trigger string, status int, err error, changes string) error {
	if m.admin != nil {
		m.admin.CountReload(false)
	}
	file := m.opts.confFile
	if status == http.StatusBadRequest {
		for _, line := range strings.Split(err.Error(), "\n") {
			m.log.Error("configuration not reloaded: the file has a problem; the running configuration is unchanged",
				"trigger", trigger, "file", file, "problem", line)
		}
	} else {
		m.log.Error("configuration not reloaded: it cannot be applied; the running configuration is unchanged",
			"trigger", trigger, "file", file, "changes", changes, "err", err)
	}
	return &admin.ReloadError{Status: status, Err: err}
}

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// TestListenConflictsMatchTheKernel is differential: for pairs of listen
// addresses on one port, Validate's verdict must be what really happens when
// serve opens them (the pools' tcp4/tcp6 sockets, the admin and stats listeners'
// net.Listen), so -t rejects exactly the files that would fail at start.
func TestListenConflictsMatchTheKernel(t *testing.T) {
	// which listens where: "a" and "b" are pools, "admin" and "stats" the
	// proxy-wide listeners. want is whether they collide.
	for _, tc := range []struct {
		first, firstHost, second, secondHost string
		want                                 bool
	}{
		{"a", "127.0.0.1", "b", "127.0.0.1", true},
		{"a", "127.0.0.1", "b", "0.0.0.0", true},
		{"a", "0.0.0.0", "b", "127.0.0.1", true},
		{"a", "127.0.0.1", "b", "127.0.0.2", false},
		{"a", "127.0.0.1", "b", "::ffff:127.0.0.1", true},
		{"a", "0.0.0.0", "b", "::ffff:127.0.0.1", true},
		{"a", "::1", "b", "::", true},
		{"a", "::", "b", "::", true},
		{"a", "::", "b", "127.0.0.1", false}, // tcp6 sets IPV6_V6ONLY
		{"a", "0.0.0.0", "b", "::", false},
		{"a", "0.0.0.0", "b", "::1", false},
		{"admin", "0.0.0.0", "a", "::1", true}, // net.Listen: dual-stack
		{"admin", "::", "a", "127.0.0.1", true},
		{"admin", "::1", "a", "0.0.0.0", false},  // the pool's socket is IPv4 only
		{"admin", "127.0.0.1", "a", "::", false}, // and this one IPv6 only
		{"admin", "::1", "a", "127.0.0.1", false},
		{"admin", "127.0.0.1", "a", "127.0.0.2", false},
		{"stats", "0.0.0.0", "admin", "::1", true},
		{"stats", "127.0.0.1", "admin", "::1", false},
		// Host names: localhost is 127.0.0.1 in /etc/hosts, and Go picks
		// an IPv4 address first. CheckHosts reports these (a warning).
		{"a", "localhost", "b", "127.0.0.1", true},
		{"a", "0.0.0.0", "b", "localhost", true},
		{"a", "localhost", "b", "::", false},
		{"admin", "::", "a", "localhost", true},
	} {
		name := tc.first + "=" + tc.firstHost + "," + tc.second + "=" + tc.secondHost
		t.Run(name, func(t *testing.T) {
			port := strconv.Itoa(testserver.FreePort(t))
			cfg := &config.Config{}
			pools := 0
			for _, l := range []struct{ who, host string }{{tc.first, tc.firstHost}, {tc.second, tc.secondHost}} {
				addr := net.JoinHostPort(l.host, port)
				switch l.who {
				case "admin":
					cfg.Admin.Listen = addr
				case "stats":
					cfg.Stats.Listen = addr
				default:
					p := config.NewPool(l.who, config.ProtocolMemcache)
					p.Listen = addr
					p.Servers = []config.Server{{Name: "s", Addr: "127.0.0.1:1", Network: "tcp", Weight: 1}}
					cfg.Pools = append(cfg.Pools, p)
					pools++
				}
			}
			if pools == 0 { // a proxy needs a pool: one on a port of its own
				p := config.NewPool("other", config.ProtocolMemcache)
				p.Listen = "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t))
				p.Servers = []config.Server{{Name: "s", Addr: "127.0.0.1:1", Network: "tcp", Weight: 1}}
				cfg.Pools = append(cfg.Pools, p)
			}
			verr := cfg.Validate()
			if verr == nil {
				// A name is looked up, and a conflict is then a warning.
				ctx, cancel := context.WithTimeout(context.Background(), config.DefaultHostCheckTimeout)
				for _, w := range cfg.CheckHosts(ctx, nil) {
					if strings.HasSuffix(w.Key, "listen") {
						verr = errors.New(w.String())
					}
				}
				cancel()
			}
			if got := verr != nil; got != tc.want {
				t.Errorf("Validate and CheckHosts: got %v; want a conflict: %v", verr, tc.want)
			} else if verr != nil && !strings.Contains(verr.Error(), port) {
				t.Errorf("Validate: got %q; want it to name the port %s", verr, port)
			}
			serr := startAndStop(t, cfg)
			if got := serr != nil; got != tc.want {
				t.Errorf("serve: got %v; want a conflict: %v (Validate said %v)", serr, tc.want, verr)
			}
		})
	}
}

// startAndStop runs serve for cfg until every listener is up, then stops it.
// It returns serve's error (nil if the listeners came up).
func startAndStop(t *testing.T, cfg *config.Config) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log, serveOptions{onListen: func([]string) { cancel() }}) }()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("serve neither failed nor listened within 30s")
	}
	return nil
}

// TestListenSpellingsStart: every spelling of a listen address that a file
// may use (twemproxy splits host:port at the last colon, so ::1:22121 is
// IPv6) is loaded in the form the listener takes, and starts; a Config built
// in code that passes Validate starts, and one that does not is refused only
// for its spelling (the listener itself would take [127.0.0.1]:P).
func TestListenSpellingsStart(t *testing.T) {
	for _, tc := range []struct{ host, want string }{
		{"127.0.0.1", "127.0.0.1"}, {"[127.0.0.1]", "127.0.0.1"}, {"localhost", "localhost"},
		{"::1", "[::1]"}, {"[::1]", "[::1]"}, {"::", "[::]"}, {"[::]", "[::]"},
		{"::ffff:127.0.0.1", "[::ffff:127.0.0.1]"}, {"[::ffff:127.0.0.1]", "[::ffff:127.0.0.1]"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			port := strconv.Itoa(testserver.FreePort(t))
			path := filepath.Join(t.TempDir(), "nutcracker.yml")
			text := "a:\n  listen: \"" + tc.host + ":" + port + "\"\n  servers:\n   - 127.0.0.1:1:1\n"
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, _, err := config.Load(path)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got, want := cfg.Pools[0].Listen, tc.want+":"+port; got != want {
				t.Errorf("Listen: got %q; want %q", got, want)
			}
			if err := startAndStop(t, cfg); err != nil {
				t.Errorf("serve %s: %v", cfg.Pools[0].Listen, err)
			}

			p := config.NewPool("a", config.ProtocolMemcache)
			p.Listen = tc.host + ":" + port
			p.Servers = []config.Server{{Name: "s", Addr: "127.0.0.1:1", Network: "tcp", Weight: 1}}
			built := &config.Config{Pools: []config.Pool{p}}
			verr := built.Validate()
			if verr != nil && !strings.Contains(verr.Error(), "write it "+tc.want+":"+port) {
				t.Errorf("built in code, listen %s: Validate says %v; want only a spelling refusal", p.Listen, verr)
			}
			if verr == nil {
				if serr := startAndStop(t, built); serr != nil {
					t.Errorf("built in code, listen %s: Validate passes; serve says %v", p.Listen, serr)
				}
			}
		})
	}
}

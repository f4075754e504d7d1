package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// startWatch runs --watch's watcher on f's file (debounced 50ms, to keep
// the test short) until the test ends.
func startWatch(t *testing.T, f *reloadFixture) {
	t.Helper()
	fw, err := newFileWatcher(f.path, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		fw.run(ctx, func() { _, _ = f.m.reload(triggerWatch, true) })
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// waitServers waits until the fake proxy's last configuration has n
// servers in pool mc, and the reload that gave it is over (counted and
// logged).
func waitServers(t *testing.T, f *reloadFixture, n int) {
	t.Helper()
	waitUntil(t, func() string {
		got := f.fake.configs()
		if len(got) == 0 || len(got[len(got)-1].Pool("mc").Servers) != n {
			return "no reload with " + strconv.Itoa(n) + " servers:\n" + f.log.String()
		}
		return ""
	})
	// The reload holds the manager's lock until it has finished: then the
	// configuration in use is the one the proxy got.
	f.m.mu.Lock()
	cur := len(f.m.cur.Pool("mc").Servers)
	f.m.mu.Unlock()
	if cur != n {
		t.Fatalf("configuration in use has %d servers; want %d", cur, n)
	}
}

// TestWatchConfigMap lays the file out as a Kubernetes ConfigMap volume does
// (config.yaml -> ..data/config.yaml, ..data -> ..<timestamp>) and updates
// it as the kubelet does: a new timestamped directory, a ..data_tmp symlink
// renamed over ..data, the old directory removed. --watch follows it. A
// file written in the directory that changes nothing does not count as a
// reload.
func TestWatchConfigMap(t *testing.T) {
	dir := t.TempDir()
	listen := testserver.FreeAddr(t)
	writeVersion := func(name string, servers int) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "config.yaml"), []byte(reloadConf(testserver.FreeAddr(t), listen, servers)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("..2026_12_02_10_00_00.1", 3)
	if err := os.Symlink("..2026_12_02_10_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/config.yaml", filepath.Join(dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	f := newReloadFixture(t, string(text))
	// The fixture wrote a file of its own: point it at the ConfigMap.
	f.path = filepath.Join(dir, "config.yaml")
	f.m.opts.confFile = f.path
	f.m.lastSeen = hashOf(t, string(text))
	startWatch(t, f)

	// Unrelated: a file beside it. It may wake the watch, which then finds
	// the configuration unchanged: no reload is counted for it.
	if err := os.WriteFile(filepath.Join(dir, "unrelated"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The kubelet's update.
	writeVersion("..2026_12_02_10_05_00.2", 4)
	if err := os.Symlink("..2026_12_02_10_05_00.2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_12_02_10_00_00.1")); err != nil {
		t.Fatal(err)
	}
	waitServers(t, f, 4)
	f.wantMetric("cacheproxy_config_reloads_total", "result", "ok", 1)
	if !strings.Contains(f.log.String(), `msg="configuration reloaded" trigger=watch file=`+f.path) {
		t.Errorf("log: no watch reload in\n%s", f.log.String())
	}

	// And the next one, from the directory the watch follows now.
	writeVersion("..2026_12_02_10_10_00.3", 3)
	if err := os.Symlink("..2026_12_02_10_10_00.3", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitServers(t, f, 3)
}

// TestWatchRenameOver: an editor's save (write a temporary file, rename it
// over the file) reloads; a broken save is refused and counted once,
// however many events it makes and however often the watch wakes (the
// same bytes are not reloaded twice); the next good save reloads.
func TestWatchRenameOver(t *testing.T) {
	listen := testserver.FreeAddr(t)
	f := newReloadFixture(t, reloadConf(testserver.FreeAddr(t), listen, 3))
	startWatch(t, f)
	save := func(text string) {
		t.Helper()
		tmp := filepath.Join(filepath.Dir(f.path), ".config.yaml.swp")
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
	save(reloadConf(testserver.FreeAddr(t), listen, 4))
	waitServers(t, f, 4)

	save("pools: [\n")
	waitUntil(t, func() string {
		if v, _ := f.metric("cacheproxy_config_reloads_total", "result", "error"); v != 1 {
			return "the broken save was not counted as an error:\n" + f.log.String()
		}
		return ""
	})
	save(reloadConf(testserver.FreeAddr(t), listen, 3))
	waitServers(t, f, 3)
	f.wantMetric("cacheproxy_config_reloads_total", "result", "error", 1)
	f.wantMetric("cacheproxy_config_reloads_total", "result", "ok", 2)
}

// TestWatchFlag: --watch and CACHEPROXY_WATCH set it; it is off by default.
func TestWatchFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want bool
	}{
		{nil, "", false},
		{[]string{"--watch"}, "", true},
		{nil, "true", true},
		{[]string{"--watch=false"}, "true", false},
	} {
		t.Setenv("CACHEPROXY_WATCH", tc.env)
		o, _, ok := parseFlags(tc.args, io.Discard, io.Discard)
		if !ok || o.watch != tc.want {
			t.Errorf("args %q, CACHEPROXY_WATCH=%q: watch %v (ok %v); want %v", tc.args, tc.env, o.watch, ok, tc.want)
		}
	}
}

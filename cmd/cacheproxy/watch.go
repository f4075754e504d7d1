package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce is how long the configuration file's directory must be
// quiet before --watch reloads: an editor's save or a ConfigMap update is
// several events.
const watchDebounce = 250 * time.Millisecond

// fileWatcher reports changes to one file for --watch. It watches the
// file's directory, not the file: editors save by renaming a new file over
// the old one, and a Kubernetes ConfigMap volume swaps a "..data" symlink
// beside the file (config.yaml -> ..data/config.yaml, ..data ->
// ..2026_01_02_...), and a watch on the file itself would see neither. When
// the file is a symlink, the directory it resolves to is watched as well.
type fileWatcher struct {
	path     string
	debounce time.Duration
	log      *slog.Logger
	w        *fsnotify.Watcher
	resolved string // the resolved file's directory, when watched and not the file's own
}

// newFileWatcher starts watching path's directory (and its resolved
// directory). It starts no goroutine: run delivers the changes. Close it
// with run, or with close if run is never called.
func newFileWatcher(path string, debounce time.Duration, log *slog.Logger) (*fileWatcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	fw := &fileWatcher{path: path, debounce: debounce, log: log, w: w}
	if err := w.Add(filepath.Dir(path)); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch %s: %w", filepath.Dir(path), err)
	}
	fw.follow()
	return fw, nil
}

// follow watches the directory the file resolves to now, if it is not the
// file's own, instead of the one before.
func (fw *fileWatcher) follow() {
	dir := ""
	if real, err := filepath.EvalSymlinks(fw.path); err == nil {
		dir = filepath.Dir(real)
	}
	if dir == filepath.Dir(fw.path) {
		dir = ""
	}
	if dir == fw.resolved {
		return
	}
	if fw.resolved != "" {
		_ = fw.w.Remove(fw.resolved) // gone already when a ConfigMap removed it
	}
	fw.resolved = ""
	if dir != "" {
		if err := fw.w.Add(dir); err != nil {
			fw.log.Warn("watch: cannot watch the directory the configuration file resolves to", "dir", dir, "err", err)
			return
		}
		fw.resolved = dir
	}
}

// run calls onChange once the watched directories have been quiet for
// the debounce interval after an event, until ctx is done; then it closes
// the watcher. onChange decides whether the file really changed.
func (fw *fileWatcher) run(ctx context.Context, onChange func()) {
	defer fw.close()
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case ev, ok := <-fw.w.Events:
			if !ok {
				return
			}
			fw.log.Debug("watch: event", "event", ev.String())
			if timer == nil {
				timer = time.NewTimer(fw.debounce)
			} else {
				timer.Reset(fw.debounce)
			}
			fire = timer.C
		case err, ok := <-fw.w.Errors:
			if !ok {
				return
			}
			fw.log.Warn("watch: error", "path", fw.path, "err", err)
		case <-fire:
			fire = nil
			fw.follow()
			onChange()
		}
	}
}

// close stops watching.
func (fw *fileWatcher) close() { _ = fw.w.Close() }

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
)

// logFile is the -o log: a file that SIGHUP reopens by name, so that
// logrotate can rename it and then signal the proxy (postrotate), as with
// nutcracker. A Go panic's dump goes to it as well as to stderr.
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

// openLogFile opens path for appending, creating it, and makes it the crash
// output.
func openLogFile(path string) (*logFile, error) {
	l := &logFile{path: path}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// Write writes b to the current file.
func (l *logFile) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(b)
}

// Reopen opens the file by its name again and closes the one before. On
// failure the old file stays in use.
func (l *logFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	// The runtime writes a fatal error's dump to stderr and to this file
	// (it keeps its own copy of the descriptor).
	if err := debug.SetCrashOutput(f, debug.CrashOptions{}); err != nil {
		f.Close()
		return fmt.Errorf("log file: crash output: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// Close closes the file.
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// stepLevel returns the level one step more verbose (up) or quieter than l
// among error, warn, info and debug, staying within them.
func stepLevel(l slog.Level, up bool) slog.Level {
	logLevels := [...]slog.Level{slog.LevelError, slog.LevelWarn, slog.LevelInfo, slog.LevelDebug}
	i := 0
	for i < len(logLevels)-1 && logLevels[i] > l {
		i++
	}
	switch {
	case up && i < len(logLevels)-1:
		i++
	case !up && i > 0:
		i--
	}
	return logLevels[i]
}

// watchSignals handles, until ctx is done, SIGHUP (reopen lf, if not nil,
// then reload the configuration with reloads, if not nil), SIGTTIN (log
// one level more: error, warn, info, debug) and SIGTTOU (one level less), as
// nutcracker does. It returns a function that stops it and waits for it.
func watchSignals(ctx context.Context, log *slog.Logger, lf *logFile, level *slog.LevelVar, reloads *reloadManager) func() {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-ch:
				switch s {
				case syscall.SIGHUP:
					if lf != nil {
						if err := lf.Reopen(); err != nil {
							log.Error("SIGHUP: log file not reopened", "path", lf.path, "err", err)
						} else {
							log.Info("SIGHUP: log file reopened", "path", lf.path)
						}
					}
					if reloads != nil {
						// The outcome is logged (and counted) by reload.
						_, _ = reloads.reload(triggerSIGHUP, false)
					}
				case syscall.SIGTTIN, syscall.SIGTTOU:
					l := stepLevel(level.Level(), s == syscall.SIGTTIN)
					level.Set(l)
					// Logged at the new level, which always shows.
					log.Log(ctx, l, "log level changed", "signal", map[bool]string{true: "SIGTTIN", false: "SIGTTOU"}[s == syscall.SIGTTIN], "level", l.String())
				}
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		cancel()
		<-done
	}
}

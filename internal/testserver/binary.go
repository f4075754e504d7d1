package testserver

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// SyncBuffer collects a process's output: the process's writers and the
// test may use it at once.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BuildCacheproxy builds cmd/cacheproxy without the race detector into the
// test's temporary directory and returns its path, or returns
// $CACHEPROXY_BIN when that is set (to test or measure another build).
func BuildCacheproxy(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("CACHEPROXY_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "cacheproxy")
	goBin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/cacheproxy/cacheproxy/cmd/cacheproxy")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/cacheproxy: %v\n%s", err, out)
	}
	return bin
}

// Cacheproxy starts the cacheproxy binary bin with the configuration file
// conf and waits until every address in listen accepts connections. Extra
// command-line arguments follow -c conf. It is stopped (SIGTERM, then
// SIGKILL) in the test's cleanup; Pid gives its process id.
func Cacheproxy(t testing.TB, bin, conf string, listen []string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: "cacheproxy", t: t, path: bin, args: append([]string{"-c", conf}, args...)}
	p.startListening(listen)
	return p
}

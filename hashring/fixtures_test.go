package hashring

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fixture is one testdata file: a pool and where nutcracker put each key.
type fixture struct {
	opts  Options
	lines []string // server lines as in nutcracker.yml
	keys  [][]byte
	want  []int
}

// ringName resolves a "host:port:weight [name]" server line to its ring name
// and weight, as twemproxy does: the name if given, else host:port, or host
// alone when the port is 11211.
func ringName(line string) (Server, error) {
	addr, name, _ := strings.Cut(line, " ")
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return Server{}, fmt.Errorf("server %q: no weight", line)
	}
	w, err := strconv.Atoi(addr[i+1:])
	if err != nil {
		return Server{}, fmt.Errorf("server %q: weight: %w", line, err)
	}
	hostPort := addr[:i]
	if name == "" {
		name = hostPort
		if host, ok := strings.CutSuffix(hostPort, ":11211"); ok {
			name = host
		}
	}
	return Server{Name: name, Weight: w}, nil
}

func loadFixture(path string) (*fixture, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fx := &fixture{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		word, rest, _ := strings.Cut(line, " ")
		switch word {
		case "", "#":
		case "distribution":
			fx.opts.Distribution = rest
		case "hash":
			fx.opts.Hash = rest
		case "hash_tag":
			fx.opts.HashTag = rest
		case "server":
			s, err := ringName(rest)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, n, err)
			}
			fx.lines = append(fx.lines, rest)
			fx.opts.Servers = append(fx.opts.Servers, s)
		default:
			key, err := hex.DecodeString(word)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: key: %w", path, n, err)
			}
			idx, err := strconv.Atoi(rest)
			if err != nil || idx < 0 || idx >= len(fx.opts.Servers) {
				return nil, fmt.Errorf("%s:%d: bad server index %q", path, n, rest)
			}
			fx.keys = append(fx.keys, key)
			fx.want = append(fx.want, idx)
		}
	}
	return fx, sc.Err()
}

// TestFixtures checks every key nutcracker 0.5.0 placed (testdata/*.txt,
// made by TestGenerateFixtures) lands on the same server here.
func TestFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// 12 hashes x {ketama, modula} x {plain, named, weighted, float32,
	// port11211}, plus a pool without hash_tag per distribution.
	if want := len(HashNames())*2*5 + 2; len(files) != want {
		t.Fatalf("got %d fixture files; want %d", len(files), want)
	}
	total := 0
	for _, file := range files {
		fx, err := loadFixture(file)
		if err != nil {
			t.Fatal(err)
		}
		total += len(fx.keys)
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			r := mustNew(t, fx.opts)
			failures := 0
			for i, key := range fx.keys {
				if got := r.Pick(key); got != fx.want[i] {
					t.Errorf("key %q (hash %#08x): got %q; want %q", key, r.Route(key).Hash, serverLine(fx, got), fx.lines[fx.want[i]])
					if failures++; failures == 5 {
						t.Fatalf("stopping after %d failures", failures)
					}
				}
			}
		})
	}
	if total < 10000 {
		t.Errorf("fixtures hold %d keys; want at least 10000", total)
	}
}

func serverLine(fx *fixture, i int) string {
	if i < 0 || i >= len(fx.lines) {
		return fmt.Sprintf("server %d", i)
	}
	return fx.lines[i]
}

func TestRingName(t *testing.T) {
	tests := []struct{ line, want string }{
		{"127.0.0.1:21211:1", "127.0.0.1:21211"},
		{"127.0.0.1:21211:1 server1", "server1"},
		{"127.0.0.2:11211:2", "127.0.0.2"},
		{"127.0.0.2:11211:1 other", "other"},
	}
	for _, tt := range tests {
		s, err := ringName(tt.line)
		if err != nil {
			t.Fatal(err)
		}
		if s.Name != tt.want {
			t.Errorf("ringName(%q) = %q; want %q", tt.line, s.Name, tt.want)
		}
	}
}

package admin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy"
)

func TestReadMemcacheStats(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{"STAT pid 1\r\nSTAT version 1.6.18\r\nEND\r\n", map[string]string{"pid": "1", "version": "1.6.18"}, ""},
		{"STAT rusage_user 0.1 extra\r\nEND\r\n", map[string]string{"rusage_user": "0.1 extra"}, ""},
		{"STAT flag\nEND\n", map[string]string{"flag": ""}, ""},
		{"END\r\n", map[string]string{}, ""},
		{"ERROR\r\n", nil, `unexpected line "ERROR"`},
		{"SERVER_ERROR out of memory\r\n", nil, `unexpected line "SERVER_ERROR out of memory"`},
		{"STAT  x\r\nEND\r\n", nil, "unexpected line"},
		{"STAT pid 1\r\n", nil, "unexpected EOF"},
		{"", nil, "unexpected EOF"},
		{strings.Repeat("STAT a 1\r\n", maxStatLines+1), nil, "reply too long"},
		{"STAT a " + strings.Repeat("x", 300) + "\r\nEND\r\n", nil, "reply too long"},
	}
	for _, tt := range tests {
		got, err := readMemcacheStats(bufio.NewReaderSize(strings.NewReader(tt.in), 64))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("readMemcacheStats(%.40q): got error %v; want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tt.want) {
			t.Errorf("readMemcacheStats(%q): got %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseInfo(t *testing.T) {
	info := "# Server\r\nredis_version:7.0.15\r\nrole:master\r\n\r\n# Keyspace\r\ndb0:keys=4,expires=0,avg_ttl=0\r\ndb1:keys=2,expires=1,avg_ttl=10\r\n"
	tests := []struct {
		in       string
		want     map[string]string
		wantKeys float64
	}{
		{info, map[string]string{"redis_version": "7.0.15", "role": "master",
			"db0": "keys=4,expires=0,avg_ttl=0", "db1": "keys=2,expires=1,avg_ttl=10"}, 6},
		{"a:1\nb:x:y", map[string]string{"a": "1", "b": "x:y"}, 0},
		{"dbx:keys=3\r\ndb2:keys=z", map[string]string{"dbx": "keys=3", "db2": "keys=z"}, 0},
		{"no colon\r\n:empty name\r\n#a:b\r\n", map[string]string{"": "empty name"}, 0},
		{"", map[string]string{}, 0},
	}
	for _, tt := range tests {
		got := parseInfo(tt.in)
		if !maps.Equal(got, tt.want) {
			t.Errorf("parseInfo(%q): got %v; want %v", tt.in, got, tt.want)
		}
		if k := keyspaceKeys(got); k != tt.wantKeys {
			t.Errorf("keyspaceKeys(%q): got %v; want %v", tt.in, k, tt.wantKeys)
		}
	}
}

// TestFetchInfo polls real redis-servers through fetch: over a unix socket
// with a password, and with a wrong one.
func TestFetchInfo(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	testserver.Redis(t, "--unixsocket", sock, "--unixsocketperm", "700", "--requirepass", "pw")
	fields, err := fetch(t.Context(), &target{network: "unix", addr: sock, protocol: config.ProtocolRedis, auth: "pw"})
	if err != nil || fields["redis_version"] == "" || fields["role"] != "master" {
		t.Fatalf("INFO over %s: got role %q, version %q, %v; want a master's INFO", sock, fields["role"], fields["redis_version"], err)
	}
	_, err = fetch(t.Context(), &target{network: "unix", addr: sock, protocol: config.ProtocolRedis, auth: "wrong"})
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: got %v; want WRONGPASS", err)
	}
	_, err = fetch(t.Context(), &target{network: "unix", addr: sock, protocol: config.ProtocolRedis})
	if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("no password: got %v; want NOAUTH", err)
	}
}

// splitParse runs read over data delivered in two reads split at i, with a
// small buffer, and returns its result as a comparable string.
func splitParse(data []byte, i int, read func(*bufio.Reader) (map[string]string, error)) string {
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(data[:i]), bytes.NewReader(data[i:])), 512)
	m, err := read(r)
	if err != nil {
		// The message quotes the offending line, which does not depend on
		// the split; EOF-type errors are the same wherever the input ends.
		return "error: " + err.Error()
	}
	b, _ := json.Marshal(m) // sorted keys
	return string(b)
}

func fuzzSplit(f *testing.F, read func(*bufio.Reader) (map[string]string, error), seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := splitParse(data, len(data), read)
		for i := range len(data) {
			if got := splitParse(data, i, read); got != whole {
				t.Fatalf("split at %d: got %q; want %q", i, got, whole)
			}
		}
	})
}

// FuzzMemcacheStats: a stats reply split at every byte boundary parses the
// same as whole.
func FuzzMemcacheStats(f *testing.F) {
	fuzzSplit(f, readMemcacheStats,
		"STAT pid 1\r\nSTAT version 1.6.18\r\nEND\r\n", "ERROR\r\n", "STAT x\nEND\n", "STAT a 1\r\nEN")
}

// FuzzRedisInfo: any INFO text parses into fields whose names and values
// are pieces of one of its lines, and its keys are counted without a crash. (The
// RESP framing around INFO is respclient's, fuzzed there.)
func FuzzRedisInfo(f *testing.F) {
	f.Add("# Server\r\nrole:master\r\n\r\n# Keyspace\r\ndb0:keys=1,expires=0\r\ndb1:keys=2\n")
	f.Add("a:b:c\r\n#x:y\r\n:\r\ndb0:keys=1e400\r\ndb9:keys=-3,keys=2\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		lines := map[string]bool{}
		for _, l := range strings.Split(in, "\n") {
			lines[strings.TrimSuffix(l, "\r")] = true
		}
		for k, v := range parseInfo(in) {
			if strings.Contains(k, ":") || strings.HasPrefix(k, "#") || !lines[k+":"+v] {
				t.Fatalf("field %q = %q is not the split of a line of %q", k, v, in)
			}
		}
		_ = keyspaceKeys(parseInfo(in))
	})
}

func TestTwemproxyJSONValues(t *testing.T) {
	stats := []proxy.PoolStats{{
		Name: `we"ird`, ClientConnections: 2, ClientConnectionsTotal: 9, ClientEOF: 6, ClientErrors: 1,
		ForwardErrors: 3, Fragments: 4,
		Servers: []proxy.ServerStats{
			{Name: "s1", Addr: "127.0.0.1:1", State: pool.StateEjected, Ejections: 2, Connections: 1, InFlight: 5,
				Requests: 10, RequestBytes: 100, Responses: 8, ResponseBytes: 80, Timeouts: 1, EOF: 2, ConnErrors: 3},
			{Name: "s2", Addr: "127.0.0.1:2", Ejections: 1, Connections: 2},
		},
	}}
	doc := twemproxyJSON(stats, "host", "1.0", 90*time.Second, time.Unix(1700000000, 0))
	var got map[string]any
	if err := json.Unmarshal(doc, &got); err != nil {
		t.Fatalf("not JSON: %v: %s", err, doc)
	}
	p := got[`we"ird`].(map[string]any)
	s1 := p["s1"].(map[string]any)
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"service", got["service"], "cacheproxy"},
		{"source", got["source"], "host"},
		{"version", got["version"], "1.0"},
		{"uptime", got["uptime"], 90.0},
		{"timestamp", got["timestamp"], 1700000000.0},
		{"total_connections", got["total_connections"], 9.0},
		{"curr_connections", got["curr_connections"], 5.0},
		{"client_eof", p["client_eof"], 6.0},
		{"client_err", p["client_err"], 1.0},
		{"client_connections", p["client_connections"], 2.0},
		{"server_ejects", p["server_ejects"], 3.0},
		{"forward_error", p["forward_error"], 3.0},
		{"fragments", p["fragments"], 4.0},
		{"server_eof", s1["server_eof"], 2.0},
		{"server_err", s1["server_err"], 3.0},
		{"server_timedout", s1["server_timedout"], 1.0},
		{"server_connections", s1["server_connections"], 1.0},
		{"requests", s1["requests"], 10.0},
		{"request_bytes", s1["request_bytes"], 100.0},
		{"responses", s1["responses"], 8.0},
		{"response_bytes", s1["response_bytes"], 80.0},
		{"out_queue", s1["out_queue"], 5.0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v; want %v", c.name, c.got, c.want)
		}
	}
}

func TestFetchUnreachable(t *testing.T) {
	_, err := fetch(t.Context(), &target{network: "tcp", addr: "127.0.0.1:1"})
	var ne interface{ Timeout() bool }
	if err == nil || !strings.HasPrefix(err.Error(), "dial:") || errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("fetch from a closed port: got %v; want a dial error that is not a timeout", err)
	}
}

// A followed server's stats object has its current address and failovers;
// other servers keep nutcracker's fields only.
func TestTwemproxyJSONFollowed(t *testing.T) {
	stats := []proxy.PoolStats{{Name: "r", Servers: []proxy.ServerStats{
		{Name: "m1", Addr: "127.0.0.1:7001", Followed: true, Failovers: 2},
		{Name: "m2", Followed: true}, // no Sentinel answer yet
		{Name: "s1", Addr: "127.0.0.1:7002"},
	}}}
	doc := twemproxyJSON(stats, "host", "1.0", 0, time.Unix(0, 0))
	var all map[string]any
	if err := json.Unmarshal(doc, &all); err != nil {
		t.Fatalf("not JSON: %v: %s", err, doc)
	}
	got := map[string]map[string]any{}
	for _, name := range []string{"m1", "m2", "s1"} {
		got[name], _ = all["r"].(map[string]any)[name].(map[string]any)
	}
	if got["m1"]["addr"] != "127.0.0.1:7001" || got["m1"]["failovers"] != 2.0 {
		t.Fatalf("m1: %v", got["m1"])
	}
	if a, ok := got["m2"]["addr"]; !ok || a != "" {
		t.Fatalf("m2 without an address: %v", got["m2"])
	}
	if _, ok := got["s1"]["addr"]; ok {
		t.Fatalf("s1 is not followed and has addr: %v", got["s1"])
	}
}

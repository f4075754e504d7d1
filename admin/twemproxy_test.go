package admin_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// readStats reads the whole JSON document the stats port at addr writes
// before closing the connection.
func readStats(t *testing.T, addr string) map[string]any {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial stats %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read stats %s: %v", addr, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("stats %s: not JSON: %v: %q", addr, err, b)
	}
	return doc
}

// shape lists every field of a stats document as "path: type", sorted, so
// two documents with the same names at every level and the same kinds of
// values have the same shape whatever their figures.
func shape(doc map[string]any) []string {
	var out []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			p := prefix + "/" + k
			switch v := v.(type) {
			case map[string]any:
				out = append(out, p+": object")
				walk(p, v)
			case string:
				out = append(out, p+": string")
			case float64:
				out = append(out, p+": number")
			default:
				out = append(out, fmt.Sprintf("%s: %T", p, v))
			}
		}
	}
	walk("", doc)
	sort.Strings(out)
	return out
}

// TestTwemproxyStatsMatchNutcracker runs nutcracker 0.5.0 and cacheproxy on
// the same configuration and compares the field names (and value kinds) of
// their stats documents at every level.
func TestTwemproxyStatsMatchNutcracker(t *testing.T) {
	mc1, mc2 := testserver.Memcached(t), testserver.Memcached(t)
	rd := testserver.Redis(t)
	conf := func(alpha, beta int) string {
		return fmt.Sprintf(`alpha:
  listen: 127.0.0.1:%d
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: true
  servers:
    - %s:1
    - %s:1 named
beta:
  listen: 127.0.0.1:%d
  redis: true
  servers:
    - %s:1
`, alpha, mc1.Addr, mc2.Addr, beta, rd.Addr)
	}
	ncA, ncB := testserver.FreePort(t), testserver.FreePort(t)
	nc := testserver.Nutcracker(t, conf(ncA, ncB), "127.0.0.1:"+strconv.Itoa(ncA), "127.0.0.1:"+strconv.Itoa(ncB))

	cfg, _, err := config.Parse("nutcracker.yml", []byte(conf(testserver.FreePort(t), testserver.FreePort(t))))
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	p := startProxy(t, cfg)
	s := startAdmin(t, admin.Options{Source: p, StatsAddr: "127.0.0.1:0", PollInterval: -1, Version: "v-test"})

	// Some traffic through both, so no figure is only ever zero.
	for _, addr := range []string{"127.0.0.1:" + strconv.Itoa(ncA), cfg.Pool("alpha").Listen} {
		c := proxytest.Dial(t, addr)
		c.RoundTrip("set a 0 0 1\r\nx\r\nget a b\r\n", "STORED\r\n", "VALUE a 0 1\r\n", "x\r\n", "END\r\n")
	}

	want := shape(readStats(t, nc.StatsAddr))
	gotDoc := readStats(t, s.StatsAddr())
	got := shape(gotDoc)
	if !slices.Equal(got, want) {
		for _, f := range want {
			if !slices.Contains(got, f) {
				t.Errorf("cacheproxy stats lack %q", f)
			}
		}
		for _, f := range got {
			if !slices.Contains(want, f) {
				t.Errorf("cacheproxy stats have %q; nutcracker's do not", f)
			}
		}
	}
	if len(want) < 40 {
		t.Errorf("nutcracker's stats have only %d fields: %v", len(want), want)
	}
	// Live figures: the request just sent is counted.
	alpha, _ := gotDoc["alpha"].(map[string]any)
	var reqs float64
	for _, v := range alpha {
		if srv, ok := v.(map[string]any); ok {
			reqs += srv["requests"].(float64)
		}
	}
	if reqs < 2 {
		t.Errorf("alpha requests summed over servers: got %v; want >= 2 (set and get)", reqs)
	}
	if v := gotDoc["version"]; v != "v-test" {
		t.Errorf("version: got %v; want %q", v, "v-test")
	}
}

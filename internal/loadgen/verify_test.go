package loadgen

import (
	"bufio"
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

func TestClassify(t *testing.T) {
	ks := newKeyspace("p:", 16)
	val := func(rank int) []byte { return ks.appendValue(nil, ks.appendKey(nil, rank)) }
	key := func(rank int) []byte { return ks.appendKey(nil, rank) }
	batch := []op{{get: true, rank: 1}, {get: true, rank: 2}, {get: false, rank: 3}}
	for _, tc := range []struct {
		name  string
		i     int
		rep   Reply
		proto Protocol
		want  outcome
	}{
		{"own value", 0, Reply{Kind: Hit, Key: key(1), Value: val(1)}, Memcache, outOK},
		{"own value redis", 1, Reply{Kind: Hit, Value: val(2)}, Redis, outOK},
		{"neighbour's value", 0, Reply{Kind: Hit, Key: key(2), Value: val(2)}, Memcache, outMisordered},
		{"stranger's value", 0, Reply{Kind: Hit, Value: val(9)}, Redis, outMisrouted},
		{"value for a set", 2, Reply{Kind: Hit, Value: val(3)}, Redis, outMisordered},
		{"stored for a get", 0, Reply{Kind: Stored}, Redis, outMisordered},
		{"miss for a set", 2, Reply{Kind: Miss}, Memcache, outMisordered},
		{"stored for a set", 2, Reply{Kind: Stored}, Memcache, outOK},
		{"miss", 0, Reply{Kind: Miss}, Memcache, outMiss},
		{"error", 0, Reply{Kind: ErrorReply, Value: []byte("ERR")}, Redis, outError},
		{"not stored", 2, Reply{Kind: NotStored}, Memcache, outNotStored},
		{"foreign value", 0, Reply{Kind: Hit, Value: []byte("hello")}, Redis, outCorrupt},
		{"truncated value", 0, Reply{Kind: Hit, Value: val(1)[:10]}, Redis, outCorrupt},
		{"VALUE key disagrees", 0, Reply{Kind: Hit, Key: key(2), Value: val(1)}, Memcache, outCorrupt},
	} {
		if got := ks.classify(batch, tc.i, tc.rep, tc.proto, true, nil); got != tc.want {
			t.Errorf("%s: got %d; want %d", tc.name, got, tc.want)
		}
	}
	// Without verify a wrong value passes; a wrong reply type does not.
	if got := ks.classify(batch, 0, Reply{Kind: Hit, Value: val(9)}, Redis, false, nil); got != outOK {
		t.Errorf("no verify, stranger's value: got %d; want %d", got, outOK)
	}
	if got := ks.classify(batch, 0, Reply{Kind: Stored}, Redis, false, nil); got != outMisordered {
		t.Errorf("no verify, stored for a get: got %d; want %d", got, outMisordered)
	}
}

func TestValueFormat(t *testing.T) {
	ks := newKeyspace("cb:", 16)
	for _, tc := range []struct {
		rank int
		want string
	}{{7, "key:cb:7:xxxxxxx"}, {123456789, "key:cb:123456789:"}} {
		got := string(ks.appendValue(nil, ks.appendKey(nil, tc.rank)))
		if got != tc.want {
			t.Errorf("value of rank %d: got %q; want %q", tc.rank, got, tc.want)
		}
		if k, ok := ks.decodeValue([]byte(got)); !ok || k != tc.rank {
			t.Errorf("decodeValue(%q) = %d, %v; want %d, true", got, k, ok, tc.rank)
		}
	}
}

// sequential is a Sampler that hands out ranks 0, 1, 2, ... (mod n), so a
// batch never holds the same key twice.
type sequential struct {
	n    int
	next atomic.Int64
}

func (s *sequential) Next(*rand.Rand) int { return int(s.next.Add(1)-1) % s.n }
func (s *sequential) N() int              { return s.n }
func (s *sequential) Prob(int) float64    { return 1 / float64(s.n) }

// fakeMemcached serves the memcached text protocol badly on purpose:
// "misorder" swaps each pair of replies, "misroute" answers a get for rank k
// with the value of rank k+n/2, "miss" answers every get with END. It
// returns its address; it stops in the test's cleanup.
func fakeMemcached(t *testing.T, mode string, ks *keyspace, n int) string {
	t.Helper()
	return testserver.FakeServer(t, func(c net.Conn) { serveFake(c, mode, ks, n) })
}

func serveFake(c net.Conn, mode string, ks *keyspace, n int) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	br := bufio.NewReader(c)
	var pending [][]byte
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		var reply []byte
		switch {
		case len(f) == 5 && f[0] == "set":
			size, _ := strconv.Atoi(f[4])
			if _, err := br.Discard(size + 2); err != nil {
				return
			}
			reply = []byte("STORED\r\n")
		case len(f) == 2 && f[0] == "get":
			rank, _ := strconv.Atoi(strings.TrimPrefix(f[1], string(ks.prefix)))
			switch mode {
			case "miss":
				reply = []byte("END\r\n")
				pending = append(pending, reply)
				goto flush
			case "misroute":
				rank = (rank + n/2) % n
			}
			key := ks.appendKey(nil, rank)
			val := ks.appendValue(nil, key)
			reply = []byte("VALUE " + string(key) + " 0 " + strconv.Itoa(len(val)) + "\r\n" + string(val) + "\r\nEND\r\n")
		default:
			reply = []byte("ERROR\r\n")
		}
		pending = append(pending, reply)
	flush:
		if mode == "misorder" && len(pending) < 2 {
			continue
		}
		if mode == "misorder" {
			pending[0], pending[1] = pending[1], pending[0]
		}
		for _, r := range pending {
			if _, err := c.Write(r); err != nil {
				return
			}
		}
		pending = pending[:0]
	}
}

func TestVerifyDetectsFaults(t *testing.T) {
	const keys = 1000
	for _, tc := range []struct {
		mode                        string
		misrouted, misordered, lost int64
	}{
		{"correct", 0, 0, 0},
		{"misorder", 0, 200, 0},
		{"misroute", 200, 0, 0},
		{"miss", 0, 0, 200},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			ks := newKeyspace("cb:", 32)
			addr := fakeMemcached(t, tc.mode, &ks, keys)
			res, err := Run(context.Background(), Config{Addr: addr, Protocol: Memcache, Conns: 1, Pipeline: 2,
				GetRatio: 1, ValueSize: 32, Keys: keys, KeyPrefix: "cb:", Sampler: &sequential{n: keys},
				Requests: 200, Verify: true, Preload: true, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Requests != 200 || res.Errors != 0 || res.Corrupt != 0 || res.ConnFailures != 0 {
				t.Fatalf("requests %d, errors %d, corrupt %d, connection failures %d (%s); want 200, 0, 0, 0",
					res.Requests, res.Errors, res.Corrupt, res.ConnFailures, res.FirstError)
			}
			if res.Misrouted != tc.misrouted || res.Misordered != tc.misordered || res.Lost != tc.lost {
				t.Errorf("misrouted %d, misordered %d, lost %d; want %d, %d, %d",
					res.Misrouted, res.Misordered, res.Lost, tc.misrouted, tc.misordered, tc.lost)
			}
		})
	}
}

func TestVerifyAgainstRealServers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto Protocol
		start func(testing.TB, ...string) *testserver.Process
	}{
		{"memcached", Memcache, testserver.Memcached},
		{"redis", Redis, testserver.Redis},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := tc.start(t)
			z, err := NewZipf(2000, 0.99)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Run(context.Background(), Config{Addr: srv.Addr, Protocol: tc.proto, Conns: 4, Pipeline: 8,
				GetRatio: 0.8, ValueSize: 64, Keys: 2000, KeyPrefix: "v:", Sampler: z,
				Requests: 20000, Verify: true, Preload: true, Seed: 3, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Requests != 20000 {
				t.Errorf("requests %d; want 20000", res.Requests)
			}
			if res.Gets+res.Sets != res.Requests || res.Hits != res.Gets {
				t.Errorf("gets %d + sets %d, hits %d; want gets+sets = %d and hits = gets", res.Gets, res.Sets, res.Hits, res.Requests)
			}
			if res.Errors+res.ConnFailures+res.Misrouted+res.Misordered+res.Corrupt+res.Lost != 0 {
				t.Errorf("errors %d, conn failures %d, misrouted %d, misordered %d, corrupt %d, lost %d (%s); want all 0",
					res.Errors, res.ConnFailures, res.Misrouted, res.Misordered, res.Corrupt, res.Lost, res.FirstError)
			}
			if res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 {
				t.Errorf("latency p50 %v p99 %v; want 0 < p50 <= p99", res.Latency.P50, res.Latency.P99)
			}
		})
	}
}

func TestConfigRejects(t *testing.T) {
	ok := Config{Addr: "127.0.0.1:1", Duration: time.Second}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"remote", func(c *Config) { c.Addr = "10.1.2.3:11211" }},
		{"remote name", func(c *Config) { c.Addr = "example.com:11211" }},
		{"no port", func(c *Config) { c.Addr = "127.0.0.1" }},
		{"ratio", func(c *Config) { c.GetRatio = 1.5 }},
		{"no bound", func(c *Config) { c.Duration = 0 }},
		{"sampler size", func(c *Config) { c.Sampler = Uniform(5) }},
		{"protocol", func(c *Config) { c.Protocol = 7 }},
	} {
		c := ok
		tc.edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil; want an error", tc.name)
		}
	}
	for _, a := range []string{"127.0.0.1:1", "127.9.9.9:1", "[::1]:1", "localhost:1"} {
		if err := CheckLoopback(a); err != nil {
			t.Errorf("CheckLoopback(%q) = %v; want nil", a, err)
		}
	}
}

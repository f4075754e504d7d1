//go:build regen

package hashring

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// keysPerCase is how many keys each fixture records.
const keysPerCase = 160

// port11211Addr is where the generator binds a memcached on port 11211: a
// second loopback address, so it does not clash with a memcached a developer
// may run on 127.0.0.1:11211.
const port11211Addr = "127.0.0.2:11211"

// fixtureShape is one server layout; backend numbers index the memcacheds
// the generator starts (sorted by port; number 4 also listens on
// port11211Addr).
type fixtureShape struct {
	name    string
	hashTag string
	servers []fixtureServer
}

type fixtureServer struct {
	backend int
	weight  int
	name    string // "" for none
	on11211 bool   // address is port11211Addr
}

func fixtureShapes() []fixtureShape {
	return []fixtureShape{
		// Config order is neither ascending nor descending by name.
		{"plain", "{}", []fixtureServer{{backend: 2, weight: 1}, {backend: 0, weight: 1}, {backend: 1, weight: 1}}},
		// Length-first name order (node-1, node-2, node-10), byte order
		// (node-1, node-10, node-2) and config order all differ.
		{"named", "{}", []fixtureServer{{backend: 0, weight: 1, name: "node-10"}, {backend: 1, weight: 1, name: "node-2"}, {backend: 2, weight: 1, name: "node-1"}}},
		{"weighted", "{}", []fixtureServer{{backend: 3, weight: 3}, {backend: 1, weight: 1}, {backend: 0, weight: 7}, {backend: 2, weight: 2}}},
		// float32 arithmetic: 1/25*160/4*5 is just below 8 in float32, so the
		// weight-1 server gets 28 points, not 32 (likewise 60, 92, 124).
		{"float32", "{}", []fixtureServer{{backend: 3, weight: 15}, {backend: 0, weight: 1}, {backend: 4, weight: 4}, {backend: 1, weight: 2}, {backend: 2, weight: 3}}},
		// Ring name "127.0.0.2" is shorter than the others but sorts after
		// them byte-wise.
		{"port11211", "{}", []fixtureServer{{backend: 1, weight: 1}, {backend: 4, weight: 1, on11211: true}, {backend: 0, weight: 1}}},
	}
}

// fixtureKeys returns n distinct memcached-legal keys (no bytes <= 0x20 or
// 0x7f, at most 250 bytes) mixing ASCII, UTF-8, raw bytes >= 0x80 at every
// tail position, hash-tagged, empty-tag and unclosed-tag keys.
func fixtureKeys(seed uint64, n int) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	legal := func() byte {
		for {
			b := byte(0x21 + rng.IntN(0x100-0x21))
			if b != 0x7f {
				return b
			}
		}
	}
	high := func() byte { return byte(0x80 + rng.IntN(0x80)) }
	randBytes := func(n int, f func() byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = f()
		}
		return b
	}
	ascii := func() byte { return byte(0x21 + rng.IntN(0x7f-0x21)) }
	words := []string{"ключ", "日本語", "café", "naïve", "Straße", "🙂", "user", "session"}
	seen := map[string]bool{}
	var keys [][]byte
	for i := 0; len(keys) < n; i++ {
		var k []byte
		switch i % 12 {
		case 0:
			k = fmt.Appendf(nil, "key:%d", rng.IntN(100000))
		case 1: // every length mod 4 and 12, ending in a high byte
			k = append(randBytes(rng.IntN(20), ascii), high())
		case 2:
			k = randBytes(1+rng.IntN(250), legal)
		case 3:
			k = fmt.Appendf(nil, "%s:%d", words[rng.IntN(len(words))], rng.IntN(10000))
		case 4:
			k = randBytes(1+rng.IntN(12), high)
		case 5: // tagged
			k = fmt.Appendf(nil, "{user:%d}:%s", rng.IntN(50), randBytes(1+rng.IntN(8), ascii))
		case 6: // tag in the middle, tag with high bytes
			k = fmt.Appendf(nil, "p%s{%s}q%d", randBytes(rng.IntN(4), ascii), randBytes(1+rng.IntN(6), legal), rng.IntN(1000))
		case 7: // empty tag: the whole key is hashed
			k = fmt.Appendf(nil, "{}%s", randBytes(1+rng.IntN(16), legal))
		case 8: // unclosed tag, close before open, two tags
			switch rng.IntN(3) {
			case 0:
				k = fmt.Appendf(nil, "{%s", randBytes(1+rng.IntN(10), ascii))
			case 1:
				k = fmt.Appendf(nil, "}%s{%d}", randBytes(1+rng.IntN(4), ascii), rng.IntN(100))
			default:
				k = fmt.Appendf(nil, "a{%d}b{%d}", rng.IntN(100), rng.IntN(100))
			}
		case 9: // a 1..3-byte tail with high bytes (hsieh, murmur, jenkins)
			k = append(randBytes(4*rng.IntN(4), ascii), randBytes(1+rng.IntN(3), high)...)
		case 10:
			k = randBytes(1+rng.IntN(3), legal)
		default:
			k = fmt.Appendf(nil, "obj/%x/%d", rng.Uint32(), rng.IntN(10))
		}
		k = bytes.ReplaceAll(k, []byte{0x7f}, []byte{'_'})
		if len(k) == 0 || len(k) > 250 || seen[string(k)] {
			continue
		}
		seen[string(k)] = true
		keys = append(keys, k)
	}
	return keys
}

// TestGenerateFixtures rewrites testdata/*.txt from the real nutcracker:
//
//	go test -tags regen ./hashring -run TestGenerateFixtures -count=1
//
// It starts five memcacheds (one also on 127.0.0.2:11211) and, per case, a
// nutcracker with one pool; it sets every key through nutcracker, then asks
// every backend directly which keys it holds.
func TestGenerateFixtures(t *testing.T) {
	var backends []*testserver.Process
	for range 4 {
		backends = append(backends, testserver.Memcached(t))
	}
	slices.SortFunc(backends, func(a, b *testserver.Process) int { return a.Port - b.Port })
	backends = append(backends, testserver.Memcached(t, "-l", port11211Addr))
	if err := waitDial(port11211Addr); err != nil {
		t.Fatalf("memcached on %s (is the port taken?): %v; output: %s", port11211Addr, err, backends[4].Output())
	}
	if err := os.RemoveAll("testdata"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	seed := uint64(1)
	var cases []struct {
		dist, hash string
		shape      fixtureShape
	}
	for _, dist := range []string{"ketama", "modula"} {
		for _, h := range HashNames() {
			for _, s := range fixtureShapes() {
				cases = append(cases, struct {
					dist, hash string
					shape      fixtureShape
				}{dist, h, s})
			}
		}
		notag := fixtureShapes()[0]
		notag.name, notag.hashTag = "plain-notag", ""
		cases = append(cases, struct {
			dist, hash string
			shape      fixtureShape
		}{dist, "md5", notag})
	}
	for _, c := range cases {
		name := c.dist + "-" + c.hash + "-" + c.shape.name
		seed++
		keys := fixtureKeys(seed, keysPerCase)
		t.Run(name, func(t *testing.T) {
			generateFixture(t, name, c.dist, c.hash, c.shape, backends, keys)
		})
	}
}

func generateFixture(t *testing.T, name, dist, hash string, shape fixtureShape, backends []*testserver.Process, keys [][]byte) {
	var lines []string
	for _, s := range shape.servers {
		addr := backends[s.backend].Addr
		if s.on11211 {
			addr = port11211Addr
		}
		line := fmt.Sprintf("%s:%d", addr, s.weight)
		if s.name != "" {
			line += " " + s.name
		}
		lines = append(lines, line)
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(testserver.FreePort(t)))
	var conf strings.Builder
	fmt.Fprintf(&conf, "pool:\n  listen: %s\n  hash: %s\n  distribution: %s\n", listen, hash, dist)
	if shape.hashTag != "" {
		fmt.Fprintf(&conf, "  hash_tag: %q\n", shape.hashTag)
	}
	fmt.Fprintf(&conf, "  auto_eject_hosts: false\n  timeout: 5000\n  servers:\n")
	for _, l := range lines {
		fmt.Fprintf(&conf, "   - %s\n", l)
	}
	for _, b := range backends {
		if _, err := memcacheRoundTrip(b.Addr, []string{"flush_all"}, 1); err != nil {
			t.Fatalf("flush %s: %v", b.Addr, err)
		}
	}
	nc := testserver.Nutcracker(t, conf.String(), listen)
	value := name
	var sets []string
	for _, k := range keys {
		sets = append(sets, fmt.Sprintf("set %s 0 0 %d\r\n%s", k, len(value), value))
	}
	replies, err := memcacheRoundTrip(listen, sets, len(sets))
	if err != nil {
		t.Fatalf("set through nutcracker: %v\nconfig:\n%s", err, conf.String())
	}
	for i, r := range replies {
		if r != "STORED" {
			t.Fatalf("set %q through nutcracker: got %q; want %q", keys[i], r, "STORED")
		}
	}
	nc.Stop()
	holder := make([]int, len(keys))
	for i := range holder {
		holder[i] = -1
	}
	for si, s := range shape.servers {
		held, err := memcacheHolds(backends[s.backend].Addr, keys, value)
		if err != nil {
			t.Fatalf("get from %s: %v", backends[s.backend].Addr, err)
		}
		for i, ok := range held {
			if !ok {
				continue
			}
			if holder[i] >= 0 {
				t.Fatalf("key %q on servers %d and %d", keys[i], holder[i], si)
			}
			holder[i] = si
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "# Placements recorded from nutcracker 0.5.0 by TestGenerateFixtures; do not edit.\n")
	fmt.Fprintf(&out, "# Regenerate: go test -tags regen ./hashring -run TestGenerateFixtures -count=1\n")
	fmt.Fprintf(&out, "# Key lines: hex(key) and the index (configuration order) of the server that held it.\n")
	fmt.Fprintf(&out, "distribution %s\nhash %s\nhash_tag %s\n", dist, hash, shape.hashTag)
	for _, l := range lines {
		fmt.Fprintf(&out, "server %s\n", l)
	}
	for i, k := range keys {
		if holder[i] < 0 {
			t.Fatalf("key %q set through nutcracker is on no backend", k)
		}
		fmt.Fprintf(&out, "%s %d\n", hex.EncodeToString(k), holder[i])
	}
	if err := os.WriteFile(filepath.Join("testdata", name+".txt"), []byte(out.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitDial(addr string) error {
	deadline := time.Now().Add(testserver.ReadyTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}

// memcacheRoundTrip pipelines the commands (each gets "\r\n") and reads one
// reply line per command, for n commands.
func memcacheRoundTrip(addr string, cmds []string, n int) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var req bytes.Buffer
	for _, cmd := range cmds {
		req.WriteString(cmd + "\r\n")
	}
	go func() { _, _ = c.Write(req.Bytes()) }()
	r := bufio.NewReader(c)
	var out []string
	for range n {
		line, err := r.ReadString('\n')
		if err != nil {
			return out, fmt.Errorf("read reply %d: %w", len(out), err)
		}
		out = append(out, strings.TrimSuffix(line, "\r\n"))
	}
	return out, nil
}

// memcacheHolds reports, per key, whether the memcached at addr holds it
// with value want.
func memcacheHolds(addr string, keys [][]byte, want string) ([]bool, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var req bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&req, "get %s\r\n", k)
	}
	go func() { _, _ = c.Write(req.Bytes()) }()
	r := bufio.NewReader(c)
	held := make([]bool, len(keys))
	for i, k := range keys {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("read reply to get %q: %w", k, err)
		}
		if line == "END\r\n" {
			continue
		}
		f := strings.Split(strings.TrimSuffix(line, "\r\n"), " ") // not Fields: keys may hold U+0085
		if len(f) != 4 || f[0] != "VALUE" || f[1] != string(k) {
			return nil, fmt.Errorf("get %q: got %q; want VALUE line or END", k, line)
		}
		n, err := strconv.Atoi(f[3])
		if err != nil {
			return nil, fmt.Errorf("get %q: bad length in %q: %w", k, line, err)
		}
		data := make([]byte, n+2)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, fmt.Errorf("get %q: read value: %w", k, err)
		}
		if end, err := r.ReadString('\n'); err != nil || end != "END\r\n" {
			return nil, fmt.Errorf("get %q: got %q (%v); want END", k, end, err)
		}
		held[i] = string(data[:n]) == want
	}
	return held, nil
}

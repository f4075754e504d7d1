package config

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeResolver answers from a table: a name it does not know is not found;
// "slow." names block until the context is done.
type fakeResolver struct {
	mu    sync.Mutex
	addrs map[string][]string
	asked map[string]int
}

func (f *fakeResolver) LookupHost(ctx context.Context, host string) ([]string, error) {
	f.mu.Lock()
	f.asked[host]++
	f.mu.Unlock()
	if strings.HasPrefix(host, "slow.") {
		<-ctx.Done()
		return nil, &net.DNSError{Err: "i/o timeout", Name: host, Server: "10.9.9.9:53", IsTimeout: true, UnwrapErr: ctx.Err()}
	}
	if a, ok := f.addrs[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, Server: "10.9.9.9:53", IsNotFound: true}
}

func TestCheckHosts(t *testing.T) {
	const text = `admin:
  listen: adminhost:9121
pools:
  b:
    listen: localhost:22122
    servers:
      - cache1.example:11211:1 one
      - 10.0.0.1:11211:1 two
      - NoSuchHost.invalid:11211:1 three
  a:
    listen: 127.0.0.1:22121
    protocol: redis
    servers:
      - name: r1
        addr: nosuchhost.invalid:6379
        replicas: [slow.example:6380, 10.0.0.2:6380, /tmp/r.sock]
      - /tmp/redis.sock:1 r2
`
	path := writeFile(t, text)
	cfg, warns, err := Load(path)
	if err != nil || len(warns) != 0 {
		t.Fatalf("Load: %v %v", warns, err)
	}
	f := &fakeResolver{asked: map[string]int{}, addrs: map[string][]string{
		"localhost":      {"127.0.0.1"},
		"cache1.example": {"10.0.0.5"},
		"adminhost":      {},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var got []string
	for _, w := range cfg.CheckHosts(ctx, f) {
		if w.File != path {
			t.Errorf("warning %q: File got %q; want %q", w, w.File, path)
		}
		got = append(got, strings.TrimPrefix(w.String(), path))
	}
	want := []string{
		`:2: admin.listen: host "adminhost" does not resolve (the listener cannot start until it resolves): no addresses`,
		`:9: pool "b": servers[2]: server "three": host "nosuchhost.invalid" does not resolve (requests to it fail until it resolves): lookup nosuchhost.invalid on 10.9.9.9:53: no such host`,
		`:14: pool "a": servers[0]: server "r1": host "nosuchhost.invalid" does not resolve (requests to it fail until it resolves): lookup nosuchhost.invalid on 10.9.9.9:53: no such host`,
		`:14: pool "a": servers[0].replicas: server "r1" replica slow.example:6380: host "slow.example" was not resolved in the time allowed (requests to it fail until it resolves): lookup slow.example on 10.9.9.9:53: i/o timeout`,
	}
	// Warnings come in line order, as Load's do.
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\ngot  %q\nwant %q", got, want)
	}
	// Each name is looked up once, whatever its spelling; addresses and
	// sockets are not looked up at all.
	for h, n := range f.asked {
		if n != 1 {
			t.Errorf("%s looked up %d times; want 1", h, n)
		}
	}
	if len(f.asked) != 5 {
		t.Errorf("looked up %v; want adminhost, localhost, cache1.example, nosuchhost.invalid, slow.example", f.asked)
	}
}

func TestCheckHostsNoNames(t *testing.T) {
	cfg, _, err := Parse("x.yml", []byte("a:\n  listen: 127.0.0.1:22121\n  servers:\n   - 127.0.0.1:11211:1\n   - \"[::1]:11212:1\"\n   - /tmp/m.sock:1\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeResolver{asked: map[string]int{}}
	if w := cfg.CheckHosts(context.Background(), f); len(w) != 0 || len(f.asked) != 0 {
		t.Errorf("got warnings %q after looking up %v; want none and no lookups", w, f.asked)
	}
}

// TestCheckHostsRealResolver looks up a name under .invalid, which RFC 6761
// guarantees never resolves, with the machine's resolver.
func TestCheckHostsRealResolver(t *testing.T) {
	cfg, _, err := Parse("x.yml", []byte("a:\n  listen: 127.0.0.1:22121\n  servers:\n   - cacheproxy-test.invalid:11211:1 s1\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultHostCheckTimeout)
	defer cancel()
	w := cfg.CheckHosts(ctx, nil)
	if len(w) != 1 {
		t.Fatalf("got %q; want one warning", w)
	}
	prefix := `x.yml:4: pool "a": servers[0]: server "s1": host "cacheproxy-test.invalid" `
	if got := w[0].String(); !strings.HasPrefix(got, prefix) {
		t.Errorf("got %q; want it to start %q", got, prefix)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Logf("the resolver did not answer within %v: %s", DefaultHostCheckTimeout, w[0])
	}
}

func TestCheckHostsListenNames(t *testing.T) {
	const text = `a:
  listen: LOCALHOST:22121
  servers:
   - 127.0.0.1:11211:1
b:
  listen: 127.0.0.1:22121
  servers:
   - 127.0.0.1:11211:1
c:
  listen: 0.0.0.0:22123
  servers:
   - 127.0.0.1:11211:1
d:
  listen: dual.example:22123
  servers:
   - 127.0.0.1:11211:1
e:
  listen: v6.example:22123
  servers:
   - 127.0.0.1:11211:1
`
	path := writeFile(t, text)
	cfg, _, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeResolver{asked: map[string]int{}, addrs: map[string][]string{
		"localhost":    {"::1", "127.0.0.1"},
		"dual.example": {"2001:db8::1", "10.0.0.7"},
		"v6.example":   {"2001:db8::2"},
	}}
	var got []string
	for _, w := range cfg.CheckHosts(context.Background(), f) {
		got = append(got, strings.TrimPrefix(w.String(), path))
	}
	want := []string{
		`:6: pool "b": listen: 127.0.0.1:22121 is the same address as LOCALHOST:22121 (127.0.0.1), the listen address of pool "a": the listener cannot start while the name resolves so`,
		`:14: pool "d": listen: dual.example:22123 (10.0.0.7) overlaps 0.0.0.0:22123, the listen address of pool "c" (0.0.0.0:22123 binds the port on every IPv4 address): the listener cannot start while the name resolves so`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\ngot  %q\nwant %q", got, want)
	}
}

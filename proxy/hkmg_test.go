package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// readGetValue reads one memcached get reply for key from r: its value, or
// a miss.
func readGetValue(r *bufio.Reader, key string) (string, bool, error) {
	l, err := r.ReadString('\n')
	if err != nil {
		return "", false, err
	}
	if l == "END\r\n" {
		return "", false, nil
	}
	f := strings.Fields(l)
	if len(f) != 4 || f[0] != "VALUE" || f[1] != key {
		return "", false, fmt.Errorf("get %s: got %q", key, l)
	}
	n, err := strconv.Atoi(f[3])
	if err != nil {
		return "", false, fmt.Errorf("get %s: got %q", key, l)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", false, err
	}
	if end, err := r.ReadString('\n'); err != nil || end != "END\r\n" {
		return "", false, fmt.Errorf("get %s: got %q after the value; want END", key, end)
	}
	return string(buf[:n]), true, nil
}

// TestHotKeysCoalesceReadYourWrite: a client pipelines "set K vN" and
// "get K" (two writes, so other clients' reads can reach the proxy's loop
// between them) while four other connections on the same loop read K
// without pause, their misses leading flights on both of the loop's
// connections to K's server. The client's get must always see its own
// vN: it may never wait for a read that another client's flight sent
// while the set was in flight (on another connection, that read can reach
// memcached before the set). The readers make the near cache serve K
// (hits rise) and their misses coalesce (coalesced rises), or the test
// proves nothing.
func TestHotKeysCoalesceReadYourWrite(t *testing.T) {

	pool := hotPool(t, false, true)
	p := proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	w := hkDial(t, pool.Listen, false)
	if err := w.set("rw", "v0"); err != nil {
		t.Fatal(err)
	}
	warm(t, p, w, "rw")
	readers := startReaders(t, pool.Listen, false, 4, func() string { return "rw" }, func(key, v string, hit bool) error {
		if !hit || !strings.HasPrefix(v, "v") {
			return fmt.Errorf("get %s: got %q (hit %v)", key, v, hit)
		}
		return nil
	})
	c, err := net.DialTimeout("tcp", pool.Listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	st := nearStats(p, "hk")
	stale := 0
	const rounds = 3000
	for i := 1; i <= rounds; i++ {
		_ = c.SetDeadline(time.Now().Add(proxytest.Timeout))
		v := "v" + strconv.Itoa(i)
		if _, err := fmt.Fprintf(c, "set rw 0 0 %d\r\n%s\r\n", len(v), v); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "get rw\r\n"); err != nil {
			t.Fatal(err)
		}
		if l, err := r.ReadString('\n'); err != nil || l != "STORED\r\n" {
			t.Fatalf("set rw: got %q (%v)", l, err)
		}
		got, hit, err := readGetValue(r, "rw")
		if err != nil {
			t.Fatal(err)
		}
		if !hit || got != v {
			if stale++; stale <= 5 {
				t.Errorf("round %d: get rw after set %q: got %q (hit %v)", i, v, got, hit)
			}
		}
		if err := readers.Err(); err != nil {
			t.Fatal(err)
		}
	}
	reads := readers.Stop(t)
	end := nearStats(p, "hk")
	t.Logf("%d rounds, %d stale; readers %d reads; hits %d, misses %d, coalesced %d", rounds, stale,
		reads, end.Hits-st.Hits, end.Misses-st.Misses, end.Coalesced-st.Coalesced)
	if end.Hits == st.Hits || end.Coalesced == st.Coalesced {
		t.Errorf("the near cache did not serve or coalesce during the writes: %+v, before %+v", end, st)
	}
}

// TestHotKeysCoalesceNotDuringWrite: with the servers stopped, client a's
// set of a hot key is in flight when client b (the next connection, so on
// the loop's other connection to the server) misses the key, then a sends
// its get. a's get must not wait for b's read (sent while a's set was in
// flight, on another connection: memcached may run it first): the
// coalesced counter stays, and a reads its own value once the servers
// resume; b reads the old value or the new one.
func TestHotKeysCoalesceNotDuringWrite(t *testing.T) {
	ss, gets := hkServers(t, false)
	pool := hkPoolOver(t, false, ss)
	p := proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	w := hkDial(t, pool.Listen, false)
	if err := w.set("hot", "v1"); err != nil {
		t.Fatal(err)
	}
	warm(t, p, w, "hot")
	a := hkDial(t, pool.Listen, false)
	b := hkDial(t, pool.Listen, false)
	st := nearStats(p, "hk")
	before := gets()
	resume := stopServers(t, ss)
	_ = a.c.SetDeadline(time.Now().Add(proxytest.Timeout))
	if _, err := io.WriteString(a.c, "set hot 0 0 2\r\nv2\r\n"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for nearStats(p, "hk").Invalidations[proxy.InvalWrite] == st.Invalidations[proxy.InvalWrite] {
		if time.Now().After(deadline) {
			t.Fatalf("the set never reached the proxy: %+v", nearStats(p, "hk"))
		}
		time.Sleep(time.Millisecond)
	}
	type res struct {
		v   string
		hit bool
		err error
	}
	rb := make(chan res, 1)
	go func() {
		v, hit, err := b.get("hot")
		rb <- res{v, hit, err}
	}()
	waitMisses(t, p, st.Misses+1)
	if _, err := io.WriteString(a.c, "get hot\r\n"); err != nil {
		t.Fatal(err)
	}
	waitMisses(t, p, st.Misses+2)
	if got := nearStats(p, "hk").Coalesced; got != st.Coalesced {
		t.Errorf("a read behind its own write in flight waited for another client's read: coalesced %d; want %d", got, st.Coalesced)
	}
	resume()
	if l, err := a.r.ReadString('\n'); err != nil || l != "STORED\r\n" {
		t.Fatalf("set hot: got %q (%v)", l, err)
	}
	if v, hit, err := readGetValue(a.r, "hot"); err != nil || !hit || v != "v2" {
		t.Errorf("get hot behind its own set: got %q (hit %v, err %v); want %q", v, hit, err, "v2")
	}
	if r := <-rb; r.err != nil || !r.hit || (r.v != "v1" && r.v != "v2") {
		t.Errorf("concurrent get hot: got %q (hit %v, err %v); want v1 or v2", r.v, r.hit, r.err)
	}
	if got := gets() - before; got != 2 {
		t.Errorf("server gets: got %d; want 2 (each miss read on its own)", got)
	}
}

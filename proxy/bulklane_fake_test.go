package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// arrival is a request a laneFake read: which fake (server) and which of its
// connections (numbered from 1 as accepted), the command, the key and, for
// a set, the value.
type arrival struct {
	server, conn  int
	cmd, key, val string
}

// laneFake is a memcached stand-in that reports every request on arrivals
// as soon as it reads it, and answers each connection's requests in order:
// a get of a key starting with "big" with a 128 KiB value, any other get
// with a miss, a set with STORED. The reply to a request that hold
// reports true for waits until release is closed (later requests on that
// connection are still read and reported meanwhile).
type laneFake struct {
	server   int
	arrivals chan arrival
	release  chan struct{}
	once     sync.Once

	mu    sync.Mutex
	conns int
	hold  func(a arrival) bool
}

// fakeBig is the value laneFake returns for a key starting with "big".
var fakeBig = strings.Repeat("b", 128<<10)

func newLaneFake(t *testing.T, server int, arrivals chan arrival) (*laneFake, string) {
	f := &laneFake{server: server, arrivals: arrivals, release: make(chan struct{})}
	addr := proxytest.FakeServer(t, f.serve)
	return f, addr
}

// setHold makes the replies to requests hold reports true for wait.
func (f *laneFake) setHold(hold func(a arrival) bool) {
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
}

// free lets every held reply go.
func (f *laneFake) free() { f.once.Do(func() { close(f.release) }) }

func (f *laneFake) serve(c net.Conn) {
	f.mu.Lock()
	f.conns++
	id := f.conns
	f.mu.Unlock()
	type reply struct {
		text string
		held bool
	}
	replies := make(chan reply, 4096)
	defer close(replies)
	go func() {
		for rep := range replies {
			if rep.held {
				<-f.release
			}
			if _, err := io.WriteString(c, rep.text); err != nil {
				return
			}
		}
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		w := strings.Fields(line)
		if len(w) == 0 {
			continue
		}
		a := arrival{server: f.server, conn: id, cmd: w[0]}
		text := "ERROR\r\n"
		switch {
		case w[0] == "version":
			text = "VERSION fake\r\n"
		case w[0] == "get" && len(w) == 2:
			a.key, text = w[1], "END\r\n"
			if strings.HasPrefix(a.key, "big") {
				text = fmt.Sprintf("VALUE %s 0 %d\r\n%s\r\nEND\r\n", a.key, len(fakeBig), fakeBig)
			}
		case w[0] == "set" && len(w) == 5:
			n, _ := strconv.Atoi(w[4])
			data := make([]byte, n+2)
			if _, err := io.ReadFull(r, data); err != nil {
				return
			}
			a.key, a.val, text = w[1], string(data[:n]), "STORED\r\n"
		}
		f.mu.Lock()
		held := f.hold != nil && f.hold(a)
		f.mu.Unlock()
		if a.cmd != "version" {
			f.arrivals <- a
		}
		replies <- reply{text, held}
	}
}

// nextArrival returns the next request a fake read.
func nextArrival(t *testing.T, arrivals chan arrival) arrival {
	t.Helper()
	select {
	case a := <-arrivals:
		return a
	case <-time.After(proxytest.Timeout):
		t.Fatal("no request reached the fake servers")
		return arrival{}
	}
}

func bigReplyOf(key string) string {
	return fmt.Sprintf("VALUE %s 0 %d\r\n%s\r\nEND\r\n", key, len(fakeBig), fakeBig)
}

// TestBulkLaneKeptWhileInFlight: a client keeps its lane while it has a
// request in flight, even when its replies' average crosses the bulk
// threshold meanwhile, so that two of its requests to one server are never
// on two connections at once. The client is on the bulk lane with a get
// held at server S; small replies from server T bring its average under
// the threshold; its next request to S must still go on the held get's
// connection (on another, S could answer it first).
func TestBulkLaneKeptWhileInFlight(t *testing.T) {
	arrivals := make(chan arrival, 4096)
	f0, a0 := newLaneFake(t, 0, arrivals)
	f1, a1 := newLaneFake(t, 1, arrivals)
	fakes := []*laneFake{f0, f1}
	pool := proxytest.MemcachePool(t, "mc")
	pool.Servers = []config.Server{{Name: "f0", Addr: a0, Network: "tcp", Weight: 1}, {Name: "f1", Addr: a1, Network: "tcp", Weight: 1}}
	pool.Timeout = 0 // the held reply stays outstanding
	p := proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	t.Cleanup(func() { f0.free(); f1.free() }) // before the proxy and the fakes stop

	// Where keys live: a separate client asks for some.
	where := map[string]int{}
	d := proxytest.Dial(t, pool.Listen)
	for i := range 16 {
		for _, k := range []string{fmt.Sprintf("big%d", i), fmt.Sprintf("k%d", i)} {
			d.Send("get " + k + "\r\n")
			where[k] = nextArrival(t, arrivals).server
			if strings.HasPrefix(k, "big") {
				expectBytes(t, d, bigReplyOf(k))
			} else {
				expectBytes(t, d, "END\r\n")
			}
		}
	}
	pick := func(prefix string, server int, skip string) string {
		for i := range 16 {
			if k := fmt.Sprintf("%s%d", prefix, i); where[k] == server && k != skip {
				return k
			}
		}
		t.Fatalf("no %s key on server %d among 16", prefix, server)
		return ""
	}
	s := where["big0"]
	tt := 1 - s
	bigA, bigB := "big0", pick("big", s, "big0")
	kT, kS := pick("k", tt, ""), pick("k", s, "")
	fakes[s].setHold(func(a arrival) bool { return a.key == bigB })

	c := proxytest.Dial(t, pool.Listen)
	for range 2 { // its replies average 128 KiB: the bulk lane from now on
		c.Send("get " + bigA + "\r\n")
		nextArrival(t, arrivals)
		expectBytes(t, c, bigReplyOf(bigA))
	}
	c.Send("get " + bigB + "\r\n") // held by S
	held := nextArrival(t, arrivals)
	c.Send(strings.Repeat("get "+kT+"\r\n", 3)) // three misses from T: the average falls under 64 KiB
	for range 3 {
		nextArrival(t, arrivals)
	}
	deadline := time.Now().Add(proxytest.Timeout)
	for p.Stats()[0].Servers[tt].Responses < 3 {
		if time.Now().After(deadline) {
			t.Fatal("server T's three replies did not reach the proxy")
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	c.Send("get " + kS + "\r\n")
	next := nextArrival(t, arrivals)
	if next.key != kS || next.server != s || next.conn != held.conn {
		t.Errorf("get %s reached server %d on its connection %d; want server %d on connection %d, the held get's", kS, next.server, next.conn, s, held.conn)
	}
	fakes[s].free()
	expectBytes(t, c, bigReplyOf(bigB)+"END\r\nEND\r\nEND\r\nEND\r\n")
}

// TestBulkLaneAsyncCopyKeepsLane: with write_policy all_async a client is
// answered by the first copy while the others are still in flight; it keeps
// its lane until they are in, so its next write to the same key goes to
// the replica on the same connection as the one still outstanding, and the
// replica applies them in order.
func TestBulkLaneAsyncCopyKeepsLane(t *testing.T) {
	primary := testserver.Memcached(t)
	arrivals := make(chan arrival, 4096)
	rep, addr := newLaneFake(t, 1, arrivals)
	rep.setHold(func(a arrival) bool { return a.cmd == "set" && a.val == "v1" })
	pool := proxytest.MemcachePool(t, "mc", primary)
	pool.Servers[0].Replicas = []config.Replica{{Name: "r1", Addr: addr, Network: "tcp"}}
	pool.WritePolicy = config.WriteAllAsync
	pool.Timeout = 0
	proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	t.Cleanup(rep.free)
	c := proxytest.Dial(t, pool.Listen)
	big := strings.Repeat("b", 256<<10)
	c.RoundTrip(fmt.Sprintf("set big 0 0 %d\r\n%s\r\n", len(big), big), "STORED\r\n")
	nextArrival(t, arrivals) // the replica's copy of set big
	// Its replies average 64 KiB or more after this: the bulk lane next.
	c.RoundTrip("get big\r\n", fmt.Sprintf("VALUE big 0 %d\r\n", len(big)), big+"\r\n", "END\r\n")
	// The primary answers; the replica holds its copy.
	c.RoundTrip("set k 0 0 2\r\nv1\r\n", "STORED\r\n")
	v1 := nextArrival(t, arrivals)
	// Its replies average under 64 KiB now.
	c.RoundTrip("set k 0 0 2\r\nv2\r\n", "STORED\r\n")
	v2 := nextArrival(t, arrivals)
	if v1.val != "v1" || v2.val != "v2" || v1.conn != v2.conn {
		t.Errorf("the replica read %+v then %+v; want v1 then v2 on one connection", v1, v2)
	}
}

// TestBulkLaneNotPreconnected: preconnect dials a server's shared
// connections, not its bulk one.
func TestBulkLaneNotPreconnected(t *testing.T) {
	mc := testserver.Memcached(t)
	pool := proxytest.MemcachePool(t, "mc", mc)
	pool.Preconnect = true
	p := proxytest.Start(t, proxy.Options{Loops: 1}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.RoundTrip("get k\r\n", "END\r\n") // the loop has adopted the pool by now
	if s := p.Stats()[0].Servers[0]; s.Dials != 1 || s.Connections != 1 {
		t.Errorf("with preconnect: %d dials, %d connections; want 1 and 1", s.Dials, s.Connections)
	}
}

package rcluster

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/hashring"
	"github.com/cacheproxy/cacheproxy/internal/respclient"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// node is a CLUSTER SHARDS node in RESP2 form.
func node(id, ip string, port int64, role, health string) []any {
	return []any{"id", id, "port", port, "ip", ip, "endpoint", ip, "role", role, "replication-offset", int64(0), "health", health}
}

func shard(slots []any, nodes ...[]any) []any {
	ns := make([]any, len(nodes))
	for i, n := range nodes {
		ns[i] = n
	}
	return []any{"slots", slots, "nodes", ns}
}

// encode writes v as RESP2.
func encode(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("$-1\r\n")
	case string:
		fmt.Fprintf(b, "$%d\r\n%s\r\n", len(x), x)
	case int64:
		fmt.Fprintf(b, ":%d\r\n", x)
	case []any:
		fmt.Fprintf(b, "*%d\r\n", len(x))
		for _, e := range x {
			encode(b, e)
		}
	case respclient.Error:
		fmt.Fprintf(b, "-%s\r\n", string(x))
	}
}

// threeShards is a CLUSTER SHARDS answer of 3 masters with a replica each;
// the third shard's old master failed over to its replica.
func threeShards() []any {
	return []any{
		shard([]any{int64(0), int64(5460)}, node("a", "10.0.0.1", 7000, "master", "online"), node("d", "10.0.0.4", 7003, "replica", "online")),
		shard([]any{int64(10923), int64(16383)}, node("c", "10.0.0.3", 7002, "master", "failed"), node("f", "10.0.0.6", 7005, "master", "online")),
		shard([]any{int64(5461), int64(8000), int64(8001), int64(10922)}, node("b", "10.0.0.2", 7001, "master", "online"),
			node("e", "?", 7004, "replica", "online"), node("g", "10.0.0.7", 7006, "replica", "loading")),
		shard([]any{}, node("h", "10.0.0.8", 7007, "master", "online")), // just added: known for redirects
		shard([]any{}, node("i", "10.0.0.9", 7008, "master", "failed")), // replaced by a failover: left out
	}
}

func TestParseShards(t *testing.T) {
	m, err := ParseShards(threeShards(), "10.0.0.9")
	if err != nil {
		t.Fatal(err)
	}
	want := Map{Shards: []Shard{
		{Master: "10.0.0.1:7000", Replicas: []string{"10.0.0.4:7003"}, Slots: []hashring.SlotRange{{Start: 0, End: 5460}}},
		{Master: "10.0.0.2:7001", Replicas: []string{"10.0.0.9:7004"}, Slots: []hashring.SlotRange{{Start: 5461, End: 10922}}},
		{Master: "10.0.0.6:7005", Slots: []hashring.SlotRange{{Start: 10923, End: 16383}}},
		{Master: "10.0.0.8:7007"},
	}}
	if !m.Equal(want) {
		t.Fatalf("got %+v\nwant %+v", m, want)
	}
	if m.Covered() != 16384 {
		t.Errorf("Covered = %d", m.Covered())
	}
	if s := m.String(); s != "10.0.0.1:7000=0-5460 10.0.0.2:7001=5461-10922 10.0.0.6:7005=10923-16383 10.0.0.8:7007=" {
		t.Errorf("String = %q", s)
	}
}

func TestParseSlots(t *testing.T) {
	n := func(ip string, port int64, id string) []any { return []any{ip, port, id} }
	v := []any{
		[]any{int64(5461), int64(10922), n("10.0.0.2", 7001, "b"), n("", 7004, "e")},
		[]any{int64(0), int64(5460), n("10.0.0.1", 7000, "a"), n("10.0.0.4", 7003, "d")},
		[]any{int64(10923), int64(16000), n("10.0.0.3", 7002, "c")},
		[]any{int64(16001), int64(16383), n("10.0.0.3", 7002, "c")},
	}
	m, err := ParseSlots(v, "10.0.0.9")
	if err != nil {
		t.Fatal(err)
	}
	want := Map{Shards: []Shard{
		{Master: "10.0.0.1:7000", Replicas: []string{"10.0.0.4:7003"}, Slots: []hashring.SlotRange{{Start: 0, End: 5460}}},
		{Master: "10.0.0.2:7001", Replicas: []string{"10.0.0.9:7004"}, Slots: []hashring.SlotRange{{Start: 5461, End: 10922}}},
		{Master: "10.0.0.3:7002", Slots: []hashring.SlotRange{{Start: 10923, End: 16383}}},
	}}
	if !m.Equal(want) {
		t.Fatalf("got %+v\nwant %+v", m, want)
	}
}

func TestParseRefuses(t *testing.T) {
	good := node("a", "10.0.0.1", 7000, "master", "online")
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"not an array", "x", "want an array of shards"},
		{"odd fields", []any{[]any{"slots"}}, "name/value pairs"},
		{"duplicate field", []any{[]any{"slots", []any{}, "slots", []any{}}}, "given twice"},
		{"slot out of range", []any{shard([]any{int64(0), int64(16384)}, good)}, "slot range"},
		{"slots reversed", []any{shard([]any{int64(9), int64(3)}, good)}, "slot range"},
		{"odd slots", []any{shard([]any{int64(9)}, good)}, "even array"},
		{"no port", []any{shard([]any{int64(0), int64(1)}, []any{"ip", "1.2.3.4", "role", "master"})}, "port"},
		{"bad role", []any{shard([]any{int64(0), int64(1)}, node("a", "h", 1, "boss", "online"))}, "role"},
		{"two online masters", []any{shard([]any{int64(0), int64(1)}, good, node("b", "h", 2, "master", "online"))}, "two online masters"},
		{"overlap", []any{shard([]any{int64(0), int64(10)}, good), shard([]any{int64(10), int64(20)}, node("b", "h", 2, "master", "online"))}, "slot 10 belongs to"},
		{"master twice", []any{shard([]any{int64(0), int64(10)}, good), shard([]any{int64(11), int64(20)}, good)}, "listed twice"},
	} {
		_, err := ParseShards(tc.v, "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v; want %q", tc.name, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"not an array", int64(1), "want an array of slot ranges"},
		{"short entry", []any{[]any{int64(0), int64(1)}}, "want [start, end"},
		{"bad port", []any{[]any{int64(0), int64(1), []any{"h", int64(0)}}}, "port"},
		{"bad ip", []any{[]any{int64(0), int64(1), []any{int64(1), int64(7000)}}}, "ip"},
		{"overlap", []any{[]any{int64(0), int64(5), []any{"a", int64(1)}}, []any{int64(5), int64(9), []any{"b", int64(1)}}}, "belongs to"},
	} {
		_, err := ParseSlots(tc.v, "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("slots %s: err %v; want %q", tc.name, err, tc.want)
		}
	}
}

// checkMap is what every parsed map promises.
func checkMap(t *testing.T, m Map) {
	t.Helper()
	var owner [hashring.SlotCount]bool
	masters := map[string]bool{}
	for _, s := range m.Shards {
		if s.Master == "" || masters[s.Master] {
			t.Fatalf("bad shard %+v", s)
		}
		masters[s.Master] = true
		if !slices.IsSorted(s.Replicas) || slices.Contains(s.Replicas, s.Master) {
			t.Fatalf("bad replicas %+v", s)
		}
		for _, r := range s.Slots {
			if r.Start < 0 || r.End >= hashring.SlotCount || r.Start > r.End {
				t.Fatalf("bad range %+v", r)
			}
			for k := r.Start; k <= r.End; k++ {
				if owner[k] {
					t.Fatalf("slot %d owned twice", k)
				}
				owner[k] = true
			}
		}
	}
}

// FuzzParse decodes arbitrary bytes as a RESP2 reply and parses it both
// ways: never a panic, and any map accepted keeps Map's promises.
func FuzzParse(f *testing.F) {
	for _, v := range []any{threeShards(), []any{[]any{int64(0), int64(16383), []any{"127.0.0.1", int64(7000), "id"}}}} {
		var b bytes.Buffer
		encode(&b, v)
		f.Add(b.Bytes())
	}
	f.Add([]byte("*1\r\n*4\r\n$5\r\nslots\r\n*0\r\n$5\r\nnodes\r\n*0\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := respclient.Decode(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		if m, err := ParseShards(v, "h"); err == nil {
			checkMap(t, m)
		}
		if m, err := ParseSlots(v, "h"); err == nil {
			checkMap(t, m)
		}
	})
}

// TestAskRealCluster asks a real 3-master cluster (with replicas) for its
// map, by CLUSTER SHARDS, and checks it against CLUSTER NODES.
func TestAskRealCluster(t *testing.T) {
	c := testserver.RedisCluster(t, 3, 1)
	// Replicas show as loading until their replication offset moves (a
	// second, with repl-ping-replica-period 1): wait for them.
	var m Map
	testserver.WaitFor(t, 15*time.Second, "a map with every replica", func() error {
		var err error
		if m, err = Ask(context.Background(), c.Nodes[0].Addr, "", "", 0); err != nil {
			return err
		}
		for _, s := range m.Shards {
			if len(s.Replicas) != 1 {
				return fmt.Errorf("map %v: shard %s has replicas %v", m, s.Master, s.Replicas)
			}
		}
		return nil
	})
	checkMap(t, m)
	if m.Covered() != hashring.SlotCount || len(m.Shards) != 3 {
		t.Fatalf("map %v: want 3 masters covering every slot", m)
	}
	for _, n := range c.NodesOf(c.Nodes[0].Addr) {
		i := slices.IndexFunc(m.Shards, func(s Shard) bool { return s.Master == n.Addr })
		if n.IsMaster() {
			if i < 0 || fmt.Sprintf("%d-%d", m.Shards[i].Slots[0].Start, m.Shards[i].Slots[0].End) != n.Slots[0] {
				t.Errorf("master %s %v not in the map %v", n.Addr, n.Slots, m)
			}
			continue
		}
		master := slices.IndexFunc(c.NodesOf(c.Nodes[0].Addr), func(o testserver.ClusterNode) bool { return o.ID == n.Master })
		owner := c.NodesOf(c.Nodes[0].Addr)[master].Addr
		j := slices.IndexFunc(m.Shards, func(s Shard) bool { return s.Master == owner })
		if j < 0 || !slices.Contains(m.Shards[j].Replicas, n.Addr) {
			t.Errorf("replica %s of %s not in the map %v", n.Addr, owner, m)
		}
	}
}

// TestAskFallsBackToSlots: a node that does not know CLUSTER SHARDS
// (before 7.0) is asked CLUSTER SLOTS.
func TestAskFallsBackToSlots(t *testing.T) {
	var asked atomic.Int32
	addr := testserver.FakeServer(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			v, err := respclient.Decode(r)
			if err != nil {
				return
			}
			args, _ := v.([]any)
			if len(args) != 2 {
				return
			}
			var b bytes.Buffer
			switch args[1] {
			case "SHARDS":
				asked.Add(1)
				b.WriteString("-ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.\r\n")
			case "SLOTS":
				encode(&b, []any{[]any{int64(0), int64(16383), []any{"", int64(7000), "id"}}})
			}
			if _, err := c.Write(b.Bytes()); err != nil {
				return
			}
		}
	})
	m, err := Ask(context.Background(), addr, "", "", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if asked.Load() != 1 || len(m.Shards) != 1 || m.Shards[0].Master != "127.0.0.1:7000" || m.Covered() != 16384 {
		t.Fatalf("map %+v (SHARDS asked %d times)", m, asked.Load())
	}
}

// TestWatcherFollowsAndKicks: the watcher reports the first map, nothing
// while it stays the same, and asks again at once when kicked.
func TestWatcherFollowsAndKicks(t *testing.T) {
	var port atomic.Int64
	port.Store(7000)
	addr := testserver.FakeServer(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			if _, err := respclient.Decode(r); err != nil {
				return
			}
			var b bytes.Buffer
			encode(&b, []any{shard([]any{int64(0), int64(16383)}, node("a", "127.0.0.1", port.Load(), "master", "online"))})
			if _, err := c.Write(b.Bytes()); err != nil {
				return
			}
		}
	})
	maps := make(chan Map, 10)
	// Asks answered, counted by the watcher once it has the answer (so the
	// port that answer carried was read before).
	var asks atomic.Int64
	w := New(Options{Seeds: []string{addr}, Interval: time.Hour, MinGap: time.Millisecond,
		OnChange: func(m Map) { maps <- m }, OnAsk: func(err error) {
			if err == nil {
				asks.Add(1)
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	next := func() Map {
		t.Helper()
		select {
		case m := <-maps:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no map reported")
		}
		return Map{}
	}
	if m := next(); m.Shards[0].Master != "127.0.0.1:7000" {
		t.Fatalf("first map %v", m)
	}
	// The same map again, twice: not reported. OnAsk runs before an ask's
	// OnChange on the watcher's goroutine, so once the second of these
	// asks is counted the first one's OnChange, if any, has run.
	for range 2 {
		n := asks.Load()
		w.Kick()
		testserver.WaitFor(t, 10*time.Second, "another ask", func() error {
			if asks.Load() == n {
				return fmt.Errorf("still %d asks", n)
			}
			return nil
		})
	}
	select {
	case m := <-maps:
		t.Fatalf("an unchanged map reported: %v", m)
	default:
	}
	// Then a new one, after a kick.
	port.Store(7001)
	w.Kick()
	if m := next(); m.Shards[0].Master != "127.0.0.1:"+strconv.Itoa(7001) {
		t.Fatalf("second map %v", m)
	}
}

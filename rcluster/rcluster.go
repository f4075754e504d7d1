// Package rcluster learns a Redis Cluster's slot map: which master owns
// which hash slots, and that master's replicas. It asks one node at a time
// CLUSTER SHARDS (Redis 7+) or, when the node does not know it, CLUSTER
// SLOTS, parses the answer strictly (a malformed answer is an error, never
// a partial map), and reports every new map. A Watcher asks periodically
// and whenever Kick says the map may be stale (a MOVED redirect, a lost
// connection). It is not on the data path.
package rcluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cacheproxy/cacheproxy/hashring"
	"github.com/cacheproxy/cacheproxy/internal/respclient"
)

// Defaults for Options' zero values.
const (
	DefaultInterval = 10 * time.Second
	DefaultTimeout  = 2 * time.Second
	// DefaultMinGap is the least time between two asks that Kick starts.
	DefaultMinGap = 100 * time.Millisecond
)

// Shard is one master, the slots it owns and its replicas.
type Shard struct {
	// Master is the master's address, "host:port".
	Master string
	// Replicas are the addresses of its online replicas, sorted.
	Replicas []string
	// Slots are the slot ranges it owns, sorted and merged.
	Slots []hashring.SlotRange
}

// Map is a cluster's slot map: its shards that own slots, sorted by first
// slot, then its online masters that own none yet (a node just added, the
// target of a migration: known so that a redirect to it can be followed),
// by address. Every slot belongs to at most one shard; a master appears
// once.
type Map struct {
	Shards []Shard
}

// Equal reports whether m and o describe the same map.
func (m Map) Equal(o Map) bool {
	return slices.EqualFunc(m.Shards, o.Shards, func(a, b Shard) bool {
		return a.Master == b.Master && slices.Equal(a.Replicas, b.Replicas) && slices.Equal(a.Slots, b.Slots)
	})
}

// Covered returns how many of the SlotCount slots have an owner.
func (m Map) Covered() int {
	n := 0
	for _, s := range m.Shards {
		for _, r := range s.Slots {
			n += r.End - r.Start + 1
		}
	}
	return n
}

// String is a one-line summary: "a:1=0-5460 b:2=5461-10922 ...".
func (m Map) String() string {
	var b strings.Builder
	for i, s := range m.Shards {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s.Master)
		b.WriteByte('=')
		for j, r := range s.Slots {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%d-%d", r.Start, r.End)
		}
	}
	return b.String()
}

// Ask connects to addr, authenticates (AUTH [user] password, when password
// is not empty) and asks for the slot map: CLUSTER SHARDS, or CLUSTER SLOTS
// when the node answers that with an error (before 7.0).
func Ask(ctx context.Context, addr, user, password string, timeout time.Duration) (Map, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c, err := respclient.Dial(ctx, addr, user, password, timeout)
	if err != nil {
		return Map{}, err
	}
	defer c.Close()
	host, _, _ := net.SplitHostPort(addr)
	v, err := c.Do("CLUSTER", "SHARDS")
	var re respclient.Error
	if errors.As(err, &re) && !strings.HasPrefix(string(re), "NOAUTH") && !strings.HasPrefix(string(re), "CLUSTERDOWN") {
		v, err = c.Do("CLUSTER", "SLOTS")
		if err != nil {
			return Map{}, fmt.Errorf("%s: CLUSTER SLOTS: %w", addr, err)
		}
		m, err := ParseSlots(v, host)
		if err != nil {
			return Map{}, fmt.Errorf("%s: CLUSTER SLOTS: %w", addr, err)
		}
		return m, nil
	}
	if err != nil {
		return Map{}, fmt.Errorf("%s: CLUSTER SHARDS: %w", addr, err)
	}
	m, err := ParseShards(v, host)
	if err != nil {
		return Map{}, fmt.Errorf("%s: CLUSTER SHARDS: %w", addr, err)
	}
	return m, nil
}

// ParseShards parses a CLUSTER SHARDS answer. asked is the host of the
// node that answered: a node whose endpoint and ip are unknown ("?" or
// empty) is at that host. Shards without a master, and failed masters
// without slots, are left out.
func ParseShards(v any, asked string) (Map, error) {
	shards, ok := v.([]any)
	if !ok {
		return Map{}, fmt.Errorf("want an array of shards, got %s", kind(v))
	}
	var b builder
	for i, sv := range shards {
		f, err := fields(sv)
		if err != nil {
			return Map{}, fmt.Errorf("shard %d: %w", i, err)
		}
		var sh Shard
		sl, ok := f["slots"].([]any)
		if !ok || len(sl)%2 != 0 {
			return Map{}, fmt.Errorf("shard %d: slots: want an even array of integers", i)
		}
		for k := 0; k < len(sl); k += 2 {
			r, err := slotRange(sl[k], sl[k+1])
			if err != nil {
				return Map{}, fmt.Errorf("shard %d: %w", i, err)
			}
			sh.Slots = append(sh.Slots, r)
		}
		nodes, ok := f["nodes"].([]any)
		if !ok {
			return Map{}, fmt.Errorf("shard %d: nodes: want an array", i)
		}
		masterOnline := false
		for j, nv := range nodes {
			nf, err := fields(nv)
			if err != nil {
				return Map{}, fmt.Errorf("shard %d node %d: %w", i, j, err)
			}
			addr, err := nodeAddr(nf, asked)
			if err != nil {
				return Map{}, fmt.Errorf("shard %d node %d: %w", i, j, err)
			}
			role, _ := nf["role"].(string)
			health, _ := nf["health"].(string)
			switch role {
			case "master":
				online := health == "" || health == "online"
				switch {
				case sh.Master == "" || online && !masterOnline:
					sh.Master, masterOnline = addr, online // a failed master gives way to an online one
				case online:
					return Map{}, fmt.Errorf("shard %d: two online masters, %s and %s", i, sh.Master, addr)
				}
			case "replica", "slave":
				if health == "" || health == "online" {
					sh.Replicas = append(sh.Replicas, addr)
				}
			default:
				return Map{}, fmt.Errorf("shard %d node %d: role %q", i, j, role)
			}
		}
		if sh.Master == "" || len(sh.Slots) == 0 && !masterOnline {
			continue // a failed master without slots (replaced by a failover)
		}
		if err := b.add(sh); err != nil {
			return Map{}, err
		}
	}
	return b.done()
}

// ParseSlots parses a CLUSTER SLOTS answer: one entry per slot range,
// [start, end, master, replica...], each node [ip, port, id, ...]. asked is
// as for ParseShards (an empty ip means the node that answered).
func ParseSlots(v any, asked string) (Map, error) {
	entries, ok := v.([]any)
	if !ok {
		return Map{}, fmt.Errorf("want an array of slot ranges, got %s", kind(v))
	}
	byMaster := map[string]int{}
	var shards []Shard
	for i, ev := range entries {
		e, ok := ev.([]any)
		if !ok || len(e) < 3 {
			return Map{}, fmt.Errorf("entry %d: want [start, end, master, replicas...]", i)
		}
		r, err := slotRange(e[0], e[1])
		if err != nil {
			return Map{}, fmt.Errorf("entry %d: %w", i, err)
		}
		var addrs []string
		for j, nv := range e[2:] {
			n, ok := nv.([]any)
			if !ok || len(n) < 2 {
				return Map{}, fmt.Errorf("entry %d node %d: want [ip, port, ...]", i, j)
			}
			ip, ok := n[0].(string)
			if !ok {
				return Map{}, fmt.Errorf("entry %d node %d: ip: want a string", i, j)
			}
			port, ok := n[1].(int64)
			if !ok || port <= 0 || port > 65535 {
				return Map{}, fmt.Errorf("entry %d node %d: port: want 1-65535", i, j)
			}
			if ip == "" || ip == "?" {
				ip = asked
			}
			if ip == "" {
				return Map{}, fmt.Errorf("entry %d node %d: no address", i, j)
			}
			addrs = append(addrs, net.JoinHostPort(ip, strconv.FormatInt(port, 10)))
		}
		k, seen := byMaster[addrs[0]]
		if !seen {
			k = len(shards)
			byMaster[addrs[0]] = k
			shards = append(shards, Shard{Master: addrs[0]})
		}
		shards[k].Slots = append(shards[k].Slots, r)
		for _, a := range addrs[1:] {
			if !slices.Contains(shards[k].Replicas, a) {
				shards[k].Replicas = append(shards[k].Replicas, a)
			}
		}
	}
	var b builder
	for _, sh := range shards {
		if err := b.add(sh); err != nil {
			return Map{}, err
		}
	}
	return b.done()
}

// builder checks and normalises shards into a Map.
type builder struct {
	shards []Shard
}

func (b *builder) add(sh Shard) error {
	for _, o := range b.shards {
		if o.Master == sh.Master {
			return fmt.Errorf("master %s listed twice", sh.Master)
		}
	}
	slices.SortFunc(sh.Slots, func(x, y hashring.SlotRange) int { return x.Start - y.Start })
	merged := sh.Slots[:min(len(sh.Slots), 1)]
	for _, r := range sh.Slots[min(len(sh.Slots), 1):] {
		last := &merged[len(merged)-1]
		if r.Start <= last.End {
			return fmt.Errorf("master %s: slot ranges overlap at %d", sh.Master, r.Start)
		}
		if r.Start == last.End+1 {
			last.End = r.End
			continue
		}
		merged = append(merged, r)
	}
	sh.Slots = merged
	slices.Sort(sh.Replicas)
	sh.Replicas = slices.Compact(sh.Replicas)
	sh.Replicas = slices.DeleteFunc(sh.Replicas, func(a string) bool { return a == sh.Master })
	b.shards = append(b.shards, sh)
	return nil
}

func (b *builder) done() (Map, error) {
	type own struct {
		r hashring.SlotRange
		m string
	}
	var all []own
	for _, s := range b.shards {
		for _, r := range s.Slots {
			all = append(all, own{r, s.Master})
		}
	}
	slices.SortFunc(all, func(x, y own) int { return x.r.Start - y.r.Start })
	for i := 1; i < len(all); i++ {
		if all[i].r.Start <= all[i-1].r.End {
			return Map{}, fmt.Errorf("slot %d belongs to %s and %s", all[i].r.Start, all[i-1].m, all[i].m)
		}
	}
	slices.SortFunc(b.shards, func(x, y Shard) int {
		switch {
		case len(x.Slots) == 0 && len(y.Slots) == 0:
			return strings.Compare(x.Master, y.Master)
		case len(x.Slots) == 0:
			return 1
		case len(y.Slots) == 0:
			return -1
		}
		return x.Slots[0].Start - y.Slots[0].Start
	})
	return Map{Shards: b.shards}, nil
}

// fields reads a flat [name, value, name, value, ...] array (RESP2's form
// of a map) into a map; names must be strings and unique.
func fields(v any) (map[string]any, error) {
	a, ok := v.([]any)
	if !ok || len(a)%2 != 0 {
		return nil, fmt.Errorf("want a flat array of name/value pairs, got %s", kind(v))
	}
	m := make(map[string]any, len(a)/2)
	for i := 0; i < len(a); i += 2 {
		k, ok := a[i].(string)
		if !ok {
			return nil, fmt.Errorf("field %d: name is %s, want a string", i/2, kind(a[i]))
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("field %q given twice", k)
		}
		m[k] = a[i+1]
	}
	return m, nil
}

// nodeAddr is a CLUSTER SHARDS node's address: its endpoint (else ip, else
// the host asked) and port.
func nodeAddr(f map[string]any, asked string) (string, error) {
	port, ok := f["port"].(int64)
	if !ok || port <= 0 || port > 65535 {
		tls, tok := f["tls-port"].(int64)
		if !tok || tls <= 0 || tls > 65535 {
			return "", errors.New("port: want an integer 1-65535")
		}
		port = tls
	}
	host := ""
	for _, k := range []string{"endpoint", "ip"} {
		if h, ok := f[k].(string); ok && h != "" && h != "?" {
			host = h
			break
		}
	}
	if host == "" {
		host = asked
	}
	if host == "" {
		return "", errors.New("no endpoint, ip or known host")
	}
	return net.JoinHostPort(host, strconv.FormatInt(port, 10)), nil
}

// slotRange checks a start/end pair.
func slotRange(a, b any) (hashring.SlotRange, error) {
	s, ok1 := a.(int64)
	e, ok2 := b.(int64)
	if !ok1 || !ok2 || s < 0 || e < s || e >= hashring.SlotCount {
		return hashring.SlotRange{}, fmt.Errorf("slot range %v-%v: want integers 0 <= start <= end < %d", a, b, hashring.SlotCount)
	}
	return hashring.SlotRange{Start: int(s), End: int(e)}, nil
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "a null"
	case string:
		return "a string"
	case int64:
		return "an integer"
	case []any:
		return "an array"
	case respclient.Error:
		return "an error"
	}
	return fmt.Sprintf("%T", v)
}

// Options configure a Watcher.
type Options struct {
	// Seeds are the nodes asked ("host:port"), after the masters and
	// replicas of the last map (which know the newest map).
	Seeds []string
	// User and Password are sent with AUTH (AUTH password when User is
	// empty). Default none.
	User, Password string
	// Interval is how often the map is asked for. If zero, DefaultInterval.
	Interval time.Duration
	// Timeout bounds each connection and command. If zero, DefaultTimeout.
	Timeout time.Duration
	// MinGap is the least time between two asks started by Kick. If zero,
	// DefaultMinGap.
	MinGap time.Duration
	// OnChange is called (from Run's goroutine) with every map that differs
	// from the last one reported, the first included. Required.
	OnChange func(Map)
	// OnAsk, if not nil, is called after every ask, with its error (nil:
	// a map was read).
	OnAsk func(error)
	// Logger, if nil, discards.
	Logger *slog.Logger
}

// Watcher asks a cluster for its slot map until its context ends.
type Watcher struct {
	o    Options
	kick chan struct{}
	last Map
	have bool
}

// New returns a watcher; Run starts it.
func New(o Options) *Watcher {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MinGap <= 0 {
		o.MinGap = DefaultMinGap
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Watcher{o: o, kick: make(chan struct{}, 1)}
}

// Kick asks for the map again soon (at most once per MinGap). It never
// blocks, so the data path may call it.
func (w *Watcher) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run asks for the map now, then every Interval and after every Kick,
// until ctx is done; it returns ctx's error.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.o.Interval)
	defer t.Stop()
	for {
		w.refresh(ctx)
		gap := time.NewTimer(w.o.MinGap)
		select {
		case <-ctx.Done():
			gap.Stop()
			return ctx.Err()
		case <-gap.C:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-w.kick:
		}
	}
}

// refresh asks the seeds, then the last map's nodes, until one answers
// with a map covering at least one slot.
func (w *Watcher) refresh(ctx context.Context) {
	var errs []error
	for _, addr := range w.candidates() {
		if ctx.Err() != nil {
			return
		}
		m, err := Ask(ctx, addr, w.o.User, w.o.Password, w.o.Timeout)
		if err == nil && m.Covered() == 0 {
			err = fmt.Errorf("%s: no slot is assigned", addr)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if w.o.OnAsk != nil {
			w.o.OnAsk(nil)
		}
		if !w.have || !m.Equal(w.last) {
			w.last, w.have = m, true
			w.o.OnChange(m)
		}
		return
	}
	err := errors.Join(errs...)
	if err == nil {
		err = errors.New("no node to ask")
	}
	w.o.Logger.Debug("cluster slot map: no node answered", "error", err)
	if w.o.OnAsk != nil {
		w.o.OnAsk(err)
	}
}

// candidates lists the nodes to ask, each once: the last map's masters and
// replicas first (they know the newest map), then the seeds.
func (w *Watcher) candidates() []string {
	var out []string
	add := func(a string) {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, s := range w.last.Shards {
		add(s.Master)
	}
	for _, s := range w.last.Shards {
		for _, r := range s.Replicas {
			add(r)
		}
	}
	for _, s := range w.o.Seeds {
		add(s)
	}
	return out
}

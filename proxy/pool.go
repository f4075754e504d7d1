package proxy

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/hashring"
	"github.com/cacheproxy/cacheproxy/pool"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// poolRT is a configured pool at run time: its ring (swapped atomically when
// servers are ejected or re-admitted), its servers' health and its codec.
type poolRT struct {
	p      *Proxy
	idx    int
	cfg    *config.Pool
	ring   atomic.Pointer[ringBox]
	health *pool.Health
	codec  codec
	names  []string // "name" or "addr" per server, for messages
	dialer net.Dialer
	// clients counts open client connections, for Limits.MaxClients.
	clients atomic.Int64
	// acceptErrors counts failed accepts and registrations on the pool's
	// listener.
	acceptErrors atomic.Int64
	// allow holds the refused-by-default commands the configuration opens.
	allow map[string]struct{}
}

type ringBox struct{ r hashring.Ring }

func newPoolRT(p *Proxy, idx int, cfg *config.Pool) (*poolRT, error) {
	pr := &poolRT{p: p, idx: idx, cfg: cfg}
	for _, s := range cfg.Servers {
		pr.names = append(pr.names, s.Name)
	}
	if err := pr.rebuild(nil); err != nil {
		return nil, err
	}
	switch cfg.Protocol {
	case config.ProtocolRedis:
		pr.codec = newRespCodec(pr)
		pr.allow = map[string]struct{}{}
		for _, name := range cfg.AllowCommands {
			cmd := resp.LookupFull([]byte(name))
			if cmd == nil {
				return nil, fmt.Errorf("allow_commands: unknown Redis command %q", name)
			}
			if cmd.Class != resp.ClassRefused && !(cmd.IsContainer() && hasRefusedSub(cmd)) {
				return nil, fmt.Errorf("allow_commands: %q is not refused by default (class %s); only refused commands can be opened", name, cmd.Class)
			}
			pr.allow[cmd.Name] = struct{}{}
		}
	default:
		pr.codec = newMemcacheCodec(pr)
	}
	dialTimeout := cfg.Timeout
	if dialTimeout <= 0 {
		dialTimeout = 5 * time.Second
	}
	pr.dialer = net.Dialer{Timeout: dialTimeout, KeepAlive: time.Minute}
	pr.health = pool.NewHealth(pool.HealthConfig{
		Servers:      len(cfg.Servers),
		AutoEject:    cfg.AutoEjectHosts,
		FailureLimit: cfg.ServerFailureLimit,
		RetryTimeout: cfg.ServerRetryTimeout,
		Probe:        pr.probe,
		ProbeTimeout: dialTimeout,
		OnChange: func(live []bool) {
			if err := pr.rebuild(live); err != nil {
				p.log.Error("rebuild ring", "pool", cfg.Name, "error", err)
			}
		},
		Logger: p.log.With("pool", cfg.Name),
		Names:  pr.names,
	})
	return pr, nil
}

// rebuild builds and publishes a ring over the live servers (nil: all).
func (pr *poolRT) rebuild(live []bool) error {
	r, err := hashring.New(hashring.Options{
		Distribution: pr.cfg.Distribution,
		Hash:         pr.cfg.Hash,
		HashTag:      pr.cfg.HashTag,
		Servers:      pr.cfg.RingServers(),
		Live:         live,
	})
	if err != nil {
		return fmt.Errorf("build ring: %w", err)
	}
	pr.ring.Store(&ringBox{r: r})
	return nil
}

// allowed reports whether a command refused by default is opened by the
// pool's allow list (by its name, or its container's for a subcommand).
func (pr *poolRT) allowed(cmd *resp.Command) bool {
	if _, ok := pr.allow[cmd.Name]; ok {
		return true
	}
	if cmd.Parent != nil {
		_, ok := pr.allow[cmd.Parent.Name]
		return ok
	}
	return false
}

// pick returns the server for key, or -1 when none is live.
func (pr *poolRT) pick(key []byte) int {
	if len(pr.cfg.Servers) == 1 {
		return 0
	}
	return pr.ring.Load().r.Pick(key)
}

// probe checks that server i answers its protocol's no-op.
func (pr *poolRT) probe(ctx context.Context, i int) error {
	s := pr.cfg.Servers[i]
	c, err := pr.dialer.DialContext(ctx, s.Network, s.Addr)
	if err != nil {
		return fmt.Errorf("probe %s: %w", s.Addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	req, want := pr.codec.probeRequest()
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("probe %s: %w", s.Addr, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("probe %s: %w", s.Addr, err)
	}
	if !strings.HasPrefix(line, want) {
		return fmt.Errorf("probe %s: unexpected reply %q", s.Addr, line)
	}
	return nil
}

// hasRefusedSub reports whether a container command has a refused subcommand.
func hasRefusedSub(c *resp.Command) bool {
	for _, s := range c.Sub {
		if s.Class == resp.ClassRefused {
			return true
		}
	}
	return false
}

package testserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/respclient"
)

// SentinelOptions configure a Sentinel started by Sentinel.
type SentinelOptions struct {
	// Master is the master name to monitor ("m1"), at Primary.
	Master  string
	Primary string
	// Quorum is the Sentinels that must agree the primary is down.
	// Default 2.
	Quorum int
	// DownAfter is down-after-milliseconds. Default 1s.
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout. Default 3s.
	FailoverTimeout time.Duration
	// Password, when set, is required of the Sentinel's clients
	// (requirepass) and sent to the other Sentinels (sentinel-pass).
	Password string
	// Extra lines appended to the configuration file.
	Extra []string
}

// Sentinel starts a redis-server --sentinel on a free loopback port
// monitoring o.Master, and waits until it accepts connections. Its
// configuration file lives in the test's temporary directory (Sentinel
// rewrites it).
func Sentinel(t testing.TB, o SentinelOptions) *Process {
	t.Helper()
	path := Require(t, "redis-server")
	if o.Quorum == 0 {
		o.Quorum = 2
	}
	if o.DownAfter == 0 {
		o.DownAfter = time.Second
	}
	if o.FailoverTimeout == 0 {
		o.FailoverTimeout = 3 * time.Second
	}
	host, port, err := net.SplitHostPort(o.Primary)
	if err != nil {
		t.Fatalf("sentinel: primary %q: %v", o.Primary, err)
	}
	dir := t.TempDir()
	return startOnFreePort(t, "redis-sentinel", path, func(p int) []string {
		lines := []string{
			"port " + strconv.Itoa(p),
			"bind 127.0.0.1",
			"dir " + dir,
			"loglevel warning",
			fmt.Sprintf("sentinel monitor %s %s %s %d", o.Master, host, port, o.Quorum),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", o.Master, o.DownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", o.Master, o.FailoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", o.Master),
		}
		if o.Password != "" {
			lines = append(lines, "requirepass "+o.Password, "sentinel sentinel-pass "+o.Password)
		}
		lines = append(lines, o.Extra...)
		file := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", p))
		if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatalf("write sentinel config: %v", err)
		}
		return []string{file, "--sentinel"}
	})
}

// Sentinels starts n Sentinels monitoring the same master (see Sentinel)
// and waits until each knows every other one and the primary's replicas
// (replicas of them, connected), so that a failover can be voted and has a replica to
// promote.
func Sentinels(t testing.TB, n, replicas int, o SentinelOptions) []*Process {
	t.Helper()
	var out []*Process
	for i := 0; i < n; i++ {
		out = append(out, Sentinel(t, o))
	}
	for _, s := range out {
		WaitFor(t, 30*time.Second, "sentinel "+s.Addr+" to know the others and the replicas", func() error {
			c, err := respclient.Dial(context.Background(), s.Addr, "", o.Password, 2*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			v, err := c.Do("SENTINEL", "sentinels", o.Master)
			if err != nil {
				return err
			}
			if l, _ := v.([]any); len(l) != n-1 {
				return fmt.Errorf("knows %d other sentinels, want %d", len(l), n-1)
			}
			v, err = c.Do("SENTINEL", "replicas", o.Master)
			if err != nil {
				return err
			}
			l, _ := v.([]any)
			if len(l) != replicas {
				return fmt.Errorf("knows %d replicas, want %d", len(l), replicas)
			}
			for _, r := range l {
				fields, _ := r.([]any)
				for i := 0; i+1 < len(fields); i += 2 {
					if fields[i] == "flags" && fields[i+1] != "slave" {
						return fmt.Errorf("replica flags %v", fields[i+1])
					}
				}
			}
			return nil
		})
	}
	return out
}

// RedisReplica starts a redis-server replicating primary (REPLICAOF at
// start; with masterauth when password is set) and waits until its link to
// the primary is up.
func RedisReplica(t testing.TB, primary *Process, password string, args ...string) *Process {
	t.Helper()
	host, port, _ := net.SplitHostPort(primary.Addr)
	a := []string{"--replicaof", host, port}
	if password != "" {
		a = append(a, "--masterauth", password, "--requirepass", password)
	}
	r := Redis(t, append(a, args...)...)
	WaitReplicaLink(t, r.Addr, password)
	return r
}

// WaitReplicaLink waits until the redis-server at addr is a replica whose
// link to its primary is up.
func WaitReplicaLink(t testing.TB, addr, password string) {
	t.Helper()
	WaitFor(t, ReadyTimeout, "replica "+addr+" link up", func() error {
		info, err := Info(addr, password, "replication")
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("not linked yet: %q", info)
		}
		return nil
	})
}

// Info returns INFO section of the redis-server at addr.
func Info(addr, password, section string) (string, error) {
	c, err := respclient.Dial(context.Background(), addr, "", password, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	v, err := c.Do("INFO", section)
	if err != nil {
		return "", err
	}
	s, _ := v.(string)
	return s, nil
}

// Role returns the first element of ROLE ("master", "slave", "sentinel")
// of the redis-server at addr.
func Role(addr, password string) (string, error) {
	c, err := respclient.Dial(context.Background(), addr, "", password, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	v, err := c.Do("ROLE")
	if err != nil {
		return "", err
	}
	if l, _ := v.([]any); len(l) > 0 {
		s, _ := l[0].(string)
		return s, nil
	}
	return "", fmt.Errorf("ROLE: unexpected reply %v", v)
}

// WaitFor polls cond every 20ms until it returns nil, failing the test with
// its last error after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v after %v", what, err, timeout)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

package sentinel_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/respclient"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/sentinel"
)

// run starts w until the test ends; its reports arrive on the returned
// channel.
func run(t *testing.T, cfg sentinel.Config) <-chan sentinel.Master {
	t.Helper()
	ch := make(chan sentinel.Master, 64)
	cfg.OnChange = func(m sentinel.Master) { ch <- m }
	w := sentinel.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
	return ch
}

// next waits for the next report.
func next(t *testing.T, ch <-chan sentinel.Master, within time.Duration) sentinel.Master {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(within):
		t.Fatalf("no report within %v", within)
		return sentinel.Master{}
	}
}

func addrs(ps ...*testserver.Process) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Addr)
	}
	return out
}

// A manual failover (SENTINEL FAILOVER) is reported through the
// +switch-master subscription, long before the periodic refresh would
// notice it.
func TestWatcherFollowsSwitchMaster(t *testing.T) {
	primary := testserver.Redis(t)
	replica := testserver.RedisReplica(t, primary, "")
	s := testserver.Sentinels(t, 1, 1, testserver.SentinelOptions{Master: "m1", Primary: primary.Addr, Quorum: 1})
	ch := run(t, sentinel.Config{Sentinels: addrs(s...), Masters: []string{"m1"}, Refresh: time.Hour})

	m := next(t, ch, 15*time.Second)
	want := sentinel.Master{Name: "m1", Addr: primary.Addr, Replicas: []string{replica.Addr}}
	if !m.Equal(want) {
		t.Fatalf("first report %+v, want %+v", m, want)
	}
	c, err := respclient.Dial(context.Background(), s[0].Addr, "", "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("SENTINEL", "FAILOVER", "m1"); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	// Refresh is an hour: only the subscription can bring this in time.
	// The bound is the failover's own duration on a loaded box, with slack.
	for {
		m = next(t, ch, 30*time.Second)
		if m.Addr == replica.Addr {
			break
		}
		if m.Addr != primary.Addr {
			t.Fatalf("report %+v names neither server", m)
		}
	}
	if role, err := testserver.Role(replica.Addr, ""); err != nil || role != "master" {
		t.Fatalf("reported primary %s has role %q (%v)", replica.Addr, role, err)
	}
}

// kill -9 of the primary: three Sentinels vote, promote the replica, and
// the watcher reports it with the dead primary left out of the replicas.
func TestWatcherFollowsCrash(t *testing.T) {
	primary := testserver.Redis(t)
	replica := testserver.RedisReplica(t, primary, "")
	s := testserver.Sentinels(t, 3, 1, testserver.SentinelOptions{Master: "m1", Primary: primary.Addr})
	ch := run(t, sentinel.Config{Sentinels: addrs(s...), Masters: []string{"m1"}})

	m := next(t, ch, 15*time.Second)
	if m.Addr != primary.Addr || !slices.Equal(m.Replicas, []string{replica.Addr}) {
		t.Fatalf("first report %+v", m)
	}
	primary.Kill()
	// down-after 1s, then a vote and the promotion: seconds; 60s is slack
	// for a loaded box, not a bound the issue states.
	for m.Addr != replica.Addr {
		m = next(t, ch, 60*time.Second)
	}
	for _, r := range m.Replicas {
		if r == primary.Addr {
			t.Fatalf("dead primary %s reported as a healthy replica: %+v", primary.Addr, m)
		}
	}
}

// A Sentinel that requires a password answers the watcher that sends it,
// and only that one.
func TestWatcherAuth(t *testing.T) {
	primary := testserver.Redis(t)
	s := testserver.Sentinels(t, 1, 0, testserver.SentinelOptions{Master: "m1", Primary: primary.Addr, Quorum: 1, Password: "s3cret"})

	wrong := run(t, sentinel.Config{Sentinels: addrs(s...), Masters: []string{"m1"}, Auth: sentinel.Auth{Password: "nope"}, Retry: 50 * time.Millisecond})
	ch := run(t, sentinel.Config{Sentinels: addrs(s...), Masters: []string{"m1"}, Auth: sentinel.Auth{Password: "s3cret"}})
	m := next(t, ch, 15*time.Second)
	if m.Addr != primary.Addr || len(m.Replicas) != 0 {
		t.Fatalf("report %+v, want primary %s and no replicas", m, primary.Addr)
	}
	// The right password answered; the wrong one has had as long and
	// retried every 50ms.
	select {
	case m := <-wrong:
		t.Fatalf("watcher with a wrong password reported %+v", m)
	default:
	}

	// user + password (ACL): a user made on the Sentinel.
	c, err := respclient.Dial(context.Background(), s[0].Addr, "", "s3cret", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Do("ACL", "SETUSER", "watcher", "on", ">w-pass", "+@all", "allchannels"); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	acl := run(t, sentinel.Config{Sentinels: addrs(s...), Masters: []string{"m1"}, Auth: sentinel.Auth{User: "watcher", Password: "w-pass"}})
	if m := next(t, acl, 15*time.Second); m.Addr != primary.Addr {
		t.Fatalf("ACL user's report %+v", m)
	}
}

// Sentinels that are down or do not know the name are skipped for the
// next one; a name no Sentinel knows is never reported.
func TestWatcherFirstThatAnswers(t *testing.T) {
	primary := testserver.Redis(t)
	s := testserver.Sentinels(t, 1, 0, testserver.SentinelOptions{Master: "m1", Primary: primary.Addr, Quorum: 1})
	other := testserver.Sentinels(t, 1, 0, testserver.SentinelOptions{Master: "elsewhere", Primary: primary.Addr, Quorum: 1})
	dead := testserver.FreeAddr(t) // nothing listens there
	ch := run(t, sentinel.Config{
		Sentinels: []string{dead, other[0].Addr, s[0].Addr},
		Masters:   []string{"m1", "unknown"},
		Retry:     50 * time.Millisecond,
	})
	m := next(t, ch, 15*time.Second)
	if m.Name != "m1" || m.Addr != primary.Addr {
		t.Fatalf("report %+v", m)
	}
	// Many retries later, still nothing about "unknown" (and no repeat of m1).
	time.Sleep(500 * time.Millisecond) // a window for a wrong report, not synchronisation
	select {
	case m := <-ch:
		t.Fatalf("unexpected report %+v", m)
	default:
	}
}

func TestWatcherNothingToWatch(t *testing.T) {
	if err := sentinel.New(sentinel.Config{Masters: []string{"m1"}}).Run(context.Background()); err == nil {
		t.Fatal("Run with no sentinels returned nil")
	}
}

package proxy_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// The users of the ACL tests, as the pool has them and as redis-server is
// told them with ACL SETUSER (keys and channels unrestricted, as the
// proxy's users are).
var aclUsers = []config.RedisUser{
	{Name: "alice", Password: "alice-pw", Commands: []string{"+@read", "+@write", "-@dangerous", "-flushall", "+get"}},
	{Name: "bob", PasswordSHA256: sha256Hex("bob-pw"), Commands: []string{"allcommands", "-@write", "-@dangerous"}},
	{Name: "default", Password: "default-pw", Commands: []string{"+@read", "+acl|whoami"}},
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// setACLUsers makes redis-server r have users (and, with backendUser, a user
// of that name and password with every command; the default user is then
// switched off).
func setACLUsers(t *testing.T, r *testserver.Process, users []config.RedisUser, backendUser, backendPass string) {
	t.Helper()
	c := proxytest.Dial(t, r.Addr)
	for _, u := range users {
		args := []string{"ACL", "SETUSER", u.Name, "reset", "on", "~*", "&*"}
		if u.Password != "" {
			args = append(args, ">"+u.Password)
		} else {
			args = append(args, "#"+u.PasswordSHA256)
		}
		c.RoundTrip(cmd(append(args, u.Commands...)...), "+OK\r\n")
	}
	if backendUser != "" {
		c.RoundTrip(cmd("ACL", "SETUSER", backendUser, "reset", "on", ">"+backendPass, "~*", "&*", "+@all"), "+OK\r\n")
		c.RoundTrip(cmd("ACL", "SETUSER", "default", "off"), "+OK\r\n")
	}
}

// TestACLUsersMatchRedis sends the same requests to a redis-server with ACL
// users and, through the proxy, to one reached with server_user and
// server_password; the pool has the same users. Every reply must be the
// same bytes: NOAUTH, WRONGPASS, -NOPERM for a denied command, a denied
// command inside MULTI, HELLO 3 AUTH, the default user, RESET.
func TestACLUsersMatchRedis(t *testing.T) {
	direct := testserver.Redis(t)
	setACLUsers(t, direct, aclUsers, "", "")
	behind := testserver.Redis(t)
	setACLUsers(t, behind, nil, "cacheproxy", "backend-pw")
	pool := proxytest.RedisPool(t, "r", behind)
	pool.Users = aclUsers
	pool.ServerUser, pool.ServerPassword = "cacheproxy", "backend-pw"
	proxytest.Start(t, proxy.Options{}, pool)

	d, p := proxytest.Dial(t, direct.Addr), proxytest.Dial(t, pool.Listen)
	for _, args := range [][]string{
		{"GET", "k"},                   // -NOAUTH
		{"PING"},                       // -NOAUTH
		{"AUTH", "alice", "wrong"},     // -WRONGPASS
		{"AUTH", "nosuch", "alice-pw"}, // -WRONGPASS
		{"AUTH", "wrong"},              // -WRONGPASS: the default user's password is another
		{"AUTH", "a", "b", "c"},        // -ERR syntax error
		{"AUTH", "alice", "alice-pw"},  // +OK
		{"SET", "k", "v"},              // allowed (@write)
		{"GET", "k"},                   // allowed
		{"MGET", "k", "nosuch"},        // allowed (@read)
		{"FLUSHALL"},                   // -NOPERM (named)
		{"KEYS", "*"},                  // -NOPERM (@dangerous)
		{"CONFIG", "GET", "maxmemory"}, // -NOPERM 'config|get'
		{"ACL", "WHOAMI"},              // -NOPERM 'acl|whoami' (@slow)
		{"PING"},                       // -NOPERM (@connection)
		{"MULTI"},                      // -NOPERM (@transaction)
		{"NOSUCHCMD"},                  // unknown command first
		{"GET"},                        // arity first
		{"AUTH", "bob", "bob-pw"},      // +OK (password_sha256)
		{"GET", "k"},                   // allowed
		{"SET", "k", "w"},              // -NOPERM (@write)
		{"ACL", "WHOAMI"},              // bob
		{"PING"},                       // +PONG
		{"MULTI"},                      // +OK
		{"GET", "k"},                   // +QUEUED
		{"DEL", "k"},                   // -NOPERM while queueing
		{"EXEC"},                       // -EXECABORT
		{"HELLO", "3", "AUTH", "alice", "wrong"},
		{"HELLO", "3", "AUTH", "alice", "alice-pw"},
		{"GET", "k"}, // allowed, RESP3
		{"HELLO", "2", "AUTH", "bob", "bob-pw"},
		{"SET", "k", "x"},      // -NOPERM
		{"AUTH", "default-pw"}, // the default user
		{"ACL", "WHOAMI"},      // default
		{"GET", "k"},           // allowed
		{"SET", "k", "y"},      // -NOPERM
		{"RESET"},              // back to no user: the default one has a password
		{"GET", "k"},           // -NOAUTH
	} {
		req := cmd(args...)
		d.Send(req)
		p.Send(req)
		dr, pr := readReply(t, d), readReply(t, p)
		dr, pr = helloID.ReplaceAllString(dr, "ID"), helloID.ReplaceAllString(pr, "ID")
		if dr != pr {
			t.Errorf("%q: through the proxy %q; redis-server %q", args, pr, dr)
		}
	}
	// The proxy's backend connection is the cacheproxy user's.
	b := proxytest.Dial(t, behind.Addr)
	b.RoundTrip(cmd("AUTH", "cacheproxy", "backend-pw"), "+OK\r\n")
	b.RoundTrip(cmd("GET", "k"), "$1\r\n", "v\r\n")
}

// TestACLUsersWithClients: go-redis (HELLO 3 AUTH user pass) and rueidis
// log in as users; allowed commands work, a denied one gets -NOPERM, a
// wrong password WRONGPASS. The backend has requirepass, reached with
// server_password while clients use their own users' passwords (and the
// pool's redis_auth is another password again: the default user's).
func TestACLUsersWithClients(t *testing.T) {
	behind := testserver.Redis(t, "--requirepass", "backend-pw")
	pool := proxytest.RedisPool(t, "r", behind)
	pool.RedisAuth = "default-pw"
	pool.ServerPassword = "backend-pw"
	pool.Users = aclUsers[:2]
	p := proxytest.Start(t, proxy.Options{}, pool)
	ctx := context.Background()

	alice := redis.NewClient(&redis.Options{Addr: pool.Listen, Username: "alice", Password: "alice-pw", Protocol: 3})
	t.Cleanup(func() { alice.Close() })
	if err := alice.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("go-redis alice SET: %v", err)
	}
	if v, err := alice.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("go-redis alice GET: %q, %v", v, err)
	}
	const noperm = "NOPERM this user has no permissions to run the 'flushall' command"
	if err := alice.FlushAll(ctx).Err(); err == nil || err.Error() != noperm {
		t.Fatalf("go-redis alice FLUSHALL: %v; want %q", err, noperm)
	}
	// The default user (redis_auth) runs everything the proxy serves.
	def := redis.NewClient(&redis.Options{Addr: pool.Listen, Password: "default-pw"})
	t.Cleanup(func() { def.Close() })
	if v, err := def.Do(ctx, "ACL", "WHOAMI").Text(); err != nil || v != "default" {
		t.Fatalf("go-redis redis_auth ACL WHOAMI: %q, %v", v, err)
	}
	if err := def.Del(ctx, "nosuch").Err(); err != nil {
		t.Fatalf("go-redis redis_auth DEL: %v", err)
	}
	wrong := redis.NewClient(&redis.Options{Addr: pool.Listen, Username: "alice", Password: "nope", Protocol: 3})
	t.Cleanup(func() { wrong.Close() })
	if err := wrong.Get(ctx, "k").Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("go-redis wrong password: %v; want WRONGPASS", err)
	}

	bob, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{pool.Listen}, Username: "bob", Password: "bob-pw", DisableCache: true})
	if err != nil {
		t.Fatalf("rueidis bob: %v", err)
	}
	t.Cleanup(bob.Close)
	if v, err := bob.Do(ctx, bob.B().Get().Key("k").Build()).ToString(); err != nil || v != "v" {
		t.Fatalf("rueidis bob GET: %q, %v", v, err)
	}
	err = bob.Do(ctx, bob.B().Set().Key("k").Value("w").Build()).Error()
	if err == nil || err.Error() != "NOPERM this user has no permissions to run the 'set' command" {
		t.Fatalf("rueidis bob SET: %v; want NOPERM", err)
	}
	if _, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{pool.Listen}, Username: "bob", Password: "nope", DisableCache: true}); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("rueidis wrong password: %v; want WRONGPASS", err)
	}
	if got := authFailures(p, "r"); got < 2 {
		t.Errorf("AuthFailures: %d; want at least the two wrong passwords", got)
	}
}

// TestACLGuessingClosed: the guessing guard counts wrong user passwords
// too: the 10th closes the connection.
func TestACLGuessingClosed(t *testing.T) {
	behind := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", behind)
	pool.Users = aclUsers[:1]
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	for i := 1; i < proxy.MaxAuthFailures; i++ {
		c.RoundTrip(cmd("AUTH", "alice", "guess"), wrongPass)
	}
	c.Send(cmd("HELLO", "3", "AUTH", "alice", "guess"))
	lines, err := readToEnd(t, c)
	if len(lines) != 1 || lines[0] != wrongPass || !closedByPeer(err) {
		t.Fatalf("wrong password #%d: got %q then %v; want one WRONGPASS and the connection closed", proxy.MaxAuthFailures, lines, err)
	}
}

// TestACLUsersReload: a reload applies to clients already connected, from
// their next command: changed rules at once, a removed user's clients
// must AUTH again, and a new user can log in.
func TestACLUsersReload(t *testing.T) {
	behind := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", behind)
	pool.Users = []config.RedisUser{
		{Name: "app", Password: "app-pw", Commands: []string{"+@read", "+@write"}},
		{Name: "gone", Password: "gone-pw", Commands: []string{"+@all"}},
	}
	p := proxytest.StartConfig(t, proxy.Options{}, &config.Config{Pools: []config.Pool{pool}})
	app, gone := proxytest.Dial(t, pool.Listen), proxytest.Dial(t, pool.Listen)
	app.RoundTrip(cmd("AUTH", "app", "app-pw"), "+OK\r\n")
	app.RoundTrip(cmd("SET", "k", "v"), "+OK\r\n")
	gone.RoundTrip(cmd("AUTH", "gone", "gone-pw"), "+OK\r\n")
	gone.RoundTrip(cmd("GET", "k"), "$1\r\n", "v\r\n")

	next := pool.Clone()
	next.Users = []config.RedisUser{
		{Name: "app", Password: "app-pw", Commands: []string{"+@read"}},
		{Name: "new", Password: "new-pw", Commands: []string{"+get"}},
	}
	if err := p.Reload(&config.Config{Pools: []config.Pool{next}}); err != nil {
		t.Fatal(err)
	}
	app.RoundTrip(cmd("SET", "k", "w"), "-NOPERM this user has no permissions to run the 'set' command\r\n")
	app.RoundTrip(cmd("GET", "k"), "$1\r\n", "v\r\n")
	gone.RoundTrip(cmd("GET", "k"), "-NOAUTH Authentication required.\r\n")
	gone.RoundTrip(cmd("AUTH", "gone", "gone-pw"), wrongPass)
	n := proxytest.Dial(t, pool.Listen)
	n.RoundTrip(cmd("AUTH", "new", "new-pw"), "+OK\r\n")
	n.RoundTrip(cmd("GET", "k"), "$1\r\n", "v\r\n")
	n.RoundTrip(cmd("ACL", "WHOAMI"), "-NOPERM this user has no permissions to run the 'acl|whoami' command\r\n")
	// The proxy's own command lists key names, so it takes SCAN's permission.
	n.RoundTrip(cmd("CACHEPROXY", "HOTKEYS"), "-NOPERM this user has no permissions to run the 'cacheproxy' command\r\n")

	// An unknown command in a rule fails the reload and changes nothing.
	bad := next.Clone()
	bad.Users[0].Commands = []string{"+nosuch"}
	if err := p.Reload(&config.Config{Pools: []config.Pool{bad}}); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("reload with +nosuch: %v; want an error naming it", err)
	}
	app.RoundTrip(cmd("GET", "k"), "$1\r\n", "v\r\n")
	app.RoundTrip(cmd("SET", "k", "w"), "-NOPERM this user has no permissions to run the 'set' command\r\n")
	n2 := proxytest.Dial(t, pool.Listen)
	n2.RoundTrip(cmd("AUTH", "new", "new-pw"), "+OK\r\n")
}

// TestACLUsersRemovedByReload: a reload that removes every credential
// serves a client that had not logged in, as a new one would be.
func TestACLUsersRemovedByReload(t *testing.T) {
	pool := proxytest.RedisPool(t, "r", testserver.Redis(t))
	pool.Users = aclUsers[:1]
	p := proxytest.StartConfig(t, proxy.Options{}, &config.Config{Pools: []config.Pool{pool}})
	c := proxytest.Dial(t, pool.Listen)
	c.RoundTrip(cmd("GET", "k"), "-NOAUTH Authentication required.\r\n")
	next := pool.Clone()
	next.Users = nil
	if err := p.Reload(&config.Config{Pools: []config.Pool{next}}); err != nil {
		t.Fatal(err)
	}
	c.RoundTrip(cmd("GET", "k"), "$-1\r\n")
	c.RoundTrip(cmd("ACL", "WHOAMI"), "$7\r\n", "default\r\n")
}

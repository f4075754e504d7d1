package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// readReply reads one complete RESP2/RESP3 reply from c, line by line
// (bulks by their length), and checks that resp.ParseReply frames it whole.
func readReply(t testing.TB, c *proxytest.Conn) string {
	t.Helper()
	_ = c.C.SetReadDeadline(time.Now().Add(proxytest.Timeout))
	var buf []byte
	for pending := 1; pending > 0; pending-- {
		line, err := c.R.ReadBytes('\n')
		if err != nil || len(line) < 3 {
			t.Fatalf("read reply (got %q, then %q): %v", buf, line, err)
		}
		buf = append(buf, line...)
		n, _ := strconv.Atoi(string(line[1 : len(line)-2]))
		switch line[0] {
		case '$', '=', '!':
			if n >= 0 {
				body := make([]byte, n+2)
				if _, err := io.ReadFull(c.R, body); err != nil {
					t.Fatalf("read reply (got %q): %v", buf, err)
				}
				buf = append(buf, body...)
			}
		case '*', '~', '>':
			pending += max(n, 0)
		case '%':
			pending += 2 * n
		case '|':
			pending += 2*n + 1
		}
	}
	if n, _, err := resp.ParseReply(buf); err != nil || n != len(buf) {
		t.Fatalf("reply %q: framed %d, %v", clip(string(buf)), n, err)
	}
	return string(buf)
}

// cmd encodes args as a RESP multibulk request.
func cmd(args ...string) string {
	var b []byte
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	b = resp.AppendCommand(b, bs...)
	return string(b)
}

// helloID matches the client id in a HELLO reply, which differs between a
// server and the proxy.
var helloID = regexp.MustCompile(`\$2\r\nid\r\n:\d+\r\n`)

// resp3DiffCommands cover every RESP3 reply type redis-server 7.0 sends a
// client: map, set, double, null, boolean, big number, verbatim text,
// nested arrays. Each is sent after HELLO 3 to a redis-server directly and
// through a one-server proxy, and the bytes must be equal.
var resp3DiffCommands = [][]string{
	{"RANDOMKEY"},                  // _ (empty database, fanned out by the proxy)
	{"GET", "nosuch"},              // _
	{"SET", "k", "v"},              // +OK
	{"GET", "k"},                   // $
	{"MGET", "k", "nosuch"},        // * with _
	{"EXISTS", "k", "nosuch", "k"}, // :2
	{"HSET", "h", "f1", "v1", "f2", "v2"},
	{"HGETALL", "h"},          // %2
	{"HGET", "h", "nosuch"},   // _
	{"HMGET", "h", "f1", "x"}, // * with _
	{"SADD", "s", "3", "1", "2"},
	{"SMEMBERS", "s"},             // ~3 (an intset: the same order everywhere)
	{"SISMEMBER", "s", "1"},       // :1
	{"SMISMEMBER", "s", "1", "9"}, // *2
	{"ZADD", "z", "1.5", "a", "2", "b"},
	{"ZSCORE", "z", "a"},                     // ,1.5
	{"ZSCORE", "z", "nosuch"},                // _
	{"ZINCRBY", "z", "1", "a"},               // ,2.5
	{"ZRANGE", "z", "0", "-1", "WITHSCORES"}, // *2 of *2 pairs
	{"ZRANGEBYSCORE", "z", "-inf", "+inf", "WITHSCORES"},
	{"ZPOPMIN", "z"},            // *2 with a double
	{"ZMSCORE", "z", "b", "x"},  // *2 ,2 _
	{"ZRANK", "z", "nosuch"},    // _
	{"INCRBYFLOAT", "f", "1.5"}, // $ (a bulk even in RESP3)
	{"RPUSH", "l", "a", "b", "c"},
	{"LPOS", "l", "zz"},        // _
	{"LRANGE", "l", "0", "-1"}, // *3
	{"LPOP", "nosuch"},         // _
	{"XADD", "x", "1-1", "f", "v"},
	{"XRANGE", "x", "-", "+"}, // nested arrays
	{"TYPE", "h"},             // +hash
	{"TTL", "k"},              // :-1
	{"INFO", "keyspace"},      // =verbatim (summed by the proxy)
	{"EXPIRE", "k", "100"},    // :1
	{"SCAN", "0", "MATCH", "k"},
	{"KEYS", "h*"},
	{"DBSIZE"},
	{"CLIENT", "GETNAME"}, // _
	{"CLIENT", "SETNAME", "resp3"},
	{"CLIENT", "GETNAME"},
	{"PING"},
	{"ECHO", "hi"},
	{"EVAL", "redis.setresp(3); return true", "0"},  // #t
	{"EVAL", "redis.setresp(3); return false", "0"}, // #f
	{"EVAL", "return {double=3.25}", "0"},           // ,3.25
	{"EVAL", "return {big_number='1234567890123456789012'}", "0"},                     // (
	{"EVAL", "return {verbatim_string={format='txt', string='hi'}}", "0"},             // =6
	{"EVAL", "redis.setresp(3); return redis.call('HGETALL', KEYS[1])", "1", "h"},     // %2
	{"EVAL", "redis.setresp(3); return redis.call('ZSCORE', KEYS[1], 'b')", "1", "z"}, // ,2
	{"EVAL", "return {map={a=1}}", "0"},                                               // %1
	{"EVAL", "return {set={a=true}}", "0"},                                            // ~1
	{"COMMAND", "INFO", "get"},                                                        // sets and maps
	{"COMMAND", "DOCS", "get"},                                                        // maps
	{"COMMAND", "COUNT"},
	{"MULTI"}, // transactions and blocking commands: dedicated connections that did HELLO 3
	{"HSET", "h", "f3", "v3"},
	{"HGETALL", "h"},
	{"ZSCORE", "z", "b"},
	{"EXEC"}, // *3 holding a map and a double
	{"WATCH", "h"},
	{"MULTI"},
	{"GET", "nosuch"},
	{"EXEC"},
	{"BLPOP", "nosuch", "0.01"}, // _ on timeout
	{"RPUSH", "bl", "x"},
	{"BLPOP", "bl", "1"},
	{"NOSUCH", "a"}, // the error is the same in both protocols
	{"HELLO", "2"},  // back to RESP2: the array, then RESP2 replies
	{"HGETALL", "h"},
	{"ZSCORE", "z", "b"},
	{"GET", "nosuch"},
	{"BLPOP", "nosuch", "0.01"}, // *-1: the dedicated connection follows the switch
	{"MULTI"},
	{"HGETALL", "h"},
	{"EXEC"},
	{"HELLO", "4"},
	{"HELLO", "x"},
	{"HELLO", "3", "SETNAME"},
	{"HELLO", "3", "foo"},
	{"HELLO", "3"},
	{"GET", "nosuch"},
	{"RESET"}, // RESP2 again
	{"GET", "nosuch"},
}

func TestRESP3Differential(t *testing.T) {
	e := newRespDiffEnv(t)
	e.reset()
	direct := proxytest.Dial(t, e.direct.Addr)
	via := proxytest.Dial(t, e.proxy)
	for _, c := range []*proxytest.Conn{direct, via} {
		c.Send(cmd("HELLO", "3"))
	}
	d, p := readReply(t, direct), readReply(t, via)
	if !strings.HasPrefix(d, "%7\r\n") {
		t.Fatalf("redis-server's HELLO 3: %q; want a map of 7", d)
	}
	if dn, pn := helloID.ReplaceAllString(d, "ID"), helloID.ReplaceAllString(p, "ID"); dn != pn {
		t.Fatalf("HELLO 3 through the proxy: got %q; want %q (the id aside)", p, d)
	}
	for _, args := range resp3DiffCommands {
		req := cmd(args...)
		direct.Send(req)
		via.Send(req)
		d, p := readReply(t, direct), readReply(t, via)
		if args[0] == "HELLO" {
			d, p = helloID.ReplaceAllString(d, "ID"), helloID.ReplaceAllString(p, "ID")
		}
		if d != p {
			t.Errorf("%q: through the proxy %q; redis-server %q", args, p, d)
		}
	}
}

// The replies the proxy makes that legitimately differ from redis-server's
// (its own client id, address and fields; its own refusals) keep the RESP3
// types the server would use.
func TestRESP3ProxyReplies(t *testing.T) {
	r := testserver.Redis(t)
	pool := proxytest.RedisPool(t, "r", r)
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.Send(cmd("HELLO", "3"))
	readReply(t, c)
	steps := []struct {
		req  []string
		want *regexp.Regexp
	}{
		{[]string{"CLIENT", "INFO"}, regexp.MustCompile(`^=\d+\r\ntxt:id=\d+ addr=\S+ laddr=\S+ name= db=0 resp=3\n\r\n$`)},
		{[]string{"INFO", "server"}, regexp.MustCompile(`^=\d+\r\ntxt:# Server\r\nredis_version:7\.0\.15\r\n(.|\r|\n)*\r\n$`)},
		{[]string{"CLIENT", "TRACKING", "on"}, regexp.MustCompile(`^-ERR CLIENT TRACKING is not supported by the proxy yet \(the proxy's near cache will own server-assisted caching\); disable client-side caching \(rueidis: DisableCache: true\)\r\n$`)},
		{[]string{"CLIENT", "CACHING", "yes"}, regexp.MustCompile(`^-ERR CLIENT CACHING is not supported by the proxy yet `)},
		{[]string{"CLIENT", "TRACKINGINFO"}, regexp.MustCompile(`^-ERR CLIENT TRACKINGINFO is not supported`)},
		{[]string{"CLIENT", "GETREDIR"}, regexp.MustCompile(`^-ERR CLIENT GETREDIR is not supported`)},
		{[]string{"CONFIG", "GET", "maxmemory"}, regexp.MustCompile(`^-ERR command 'config\|get' is not allowed through the proxy\r\n$`)},
		// Subscriptions and a WATCH live on dedicated connections of the
		// client's version: switching under them is refused.
		{[]string{"SUBSCRIBE", "ch"}, regexp.MustCompile(`^>3\r\n\$9\r\nsubscribe\r\n\$2\r\nch\r\n:1\r\n$`)},
		{[]string{"HELLO", "2"}, regexp.MustCompile(`^-ERR HELLO cannot change the protocol version through the proxy while the connection has subscriptions or a WATCH; RESET first\r\n$`)},
		{[]string{"HELLO"}, regexp.MustCompile(`^%7\r\n(.|\r|\n)*\$5\r\nproto\r\n:3\r\n`)},
		{[]string{"UNSUBSCRIBE", "ch"}, regexp.MustCompile(`^>3\r\n\$11\r\nunsubscribe\r\n\$2\r\nch\r\n:0\r\n$`)},
		{[]string{"WATCH", "k"}, regexp.MustCompile(`^\+OK\r\n$`)},
		{[]string{"HELLO", "2"}, regexp.MustCompile(`^-ERR HELLO cannot change the protocol version`)},
		{[]string{"UNWATCH"}, regexp.MustCompile(`^\+OK\r\n$`)},
		{[]string{"HELLO", "2"}, regexp.MustCompile(`^\*14\r\n`)},
		{[]string{"CLIENT", "INFO"}, regexp.MustCompile(`^\$\d+\r\nid=\d+ .* resp=2\n\r\n$`)},
	}
	for _, st := range steps {
		c.Send(cmd(st.req...))
		if got := readReply(t, c); !st.want.MatchString(got) {
			t.Errorf("%q: got %q; want to match %q", st.req, got, st.want)
		}
	}
}

// Through a pool of several servers, MGET's keys are fetched per server and
// merged: in RESP3 the missing ones are '_', as one redis-server answers.
func TestRESP3MultiServerMerges(t *testing.T) {
	var servers []*testserver.Process
	for i := 0; i < 3; i++ {
		servers = append(servers, testserver.Redis(t))
	}
	pool := proxytest.RedisPool(t, "r", servers...)
	proxytest.Start(t, proxy.Options{}, pool)
	c := proxytest.Dial(t, pool.Listen)
	c.Send(cmd("HELLO", "3"))
	readReply(t, c)
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	var want bytes.Buffer
	want.WriteString("*" + strconv.Itoa(len(keys)+1) + "\r\n")
	for i, k := range keys {
		if i%2 == 0 {
			c.Send(cmd("SET", k, "v"+k))
			if got := readReply(t, c); got != "+OK\r\n" {
				t.Fatalf("SET %s: got %q", k, got)
			}
			want.WriteString("$2\r\nv" + k + "\r\n")
		} else {
			want.WriteString("_\r\n")
		}
	}
	want.WriteString("_\r\n") // "zz", never set
	c.Send(cmd(append([]string{"MGET"}, append(keys, "zz")...)...))
	if got := readReply(t, c); got != want.String() {
		t.Fatalf("MGET across servers: got %q; want %q", got, want.String())
	}
	// The keys really are spread: more than one server holds some.
	holding := 0
	for _, s := range servers {
		d := proxytest.Dial(t, s.Addr)
		d.Send(cmd("DBSIZE"))
		if got := readReply(t, d); got != ":0\r\n" {
			holding++
		}
	}
	if holding < 2 {
		t.Fatalf("%d servers hold the keys; the test wants them spread", holding)
	}
	steps := []struct {
		req  []string
		want string
	}{
		{[]string{"DBSIZE"}, ":4\r\n"},
		{[]string{"EXISTS", "a", "b", "c"}, ":2\r\n"},
		{[]string{"RANDOMKEY"}, ""}, // any key: checked below
		{[]string{"INFO", "keyspace"}, "=48\r\ntxt:# Keyspace\r\ndb0:keys=4,expires=0,avg_ttl=0\r\n\r\n"},
		{[]string{"DEL", "a", "c", "e", "g"}, ":4\r\n"},
		{[]string{"RANDOMKEY"}, "_\r\n"},
		{[]string{"MGET", "a", "b"}, "*2\r\n_\r\n_\r\n"},
		{[]string{"SCAN", "0"}, "*2\r\n$1\r\n1\r\n*0\r\n"},
	}
	for _, st := range steps {
		c.Send(cmd(st.req...))
		got := readReply(t, c)
		if st.want == "" {
			if !regexp.MustCompile(`^\$1\r\n[aceg]\r\n$`).MatchString(got) {
				t.Errorf("%q: got %q; want one of the keys", st.req, got)
			}
			continue
		}
		if got != st.want {
			t.Errorf("%q: got %q; want %q", st.req, got, st.want)
		}
	}
}

// Pub/sub in RESP3: confirmations and messages are pushes, and the
// subscribed client goes on running ordinary commands, as with
// redis-server itself.
func TestRESP3PubSubDifferential(t *testing.T) {
	e := newRespDiffEnv(t)
	e.reset()
	type side struct{ sub, pub *proxytest.Conn }
	sides := []side{
		{proxytest.Dial(t, e.direct.Addr), proxytest.Dial(t, e.direct.Addr)},
		{proxytest.Dial(t, e.proxy), proxytest.Dial(t, e.proxy)},
	}
	steps := []struct {
		pub  bool // sent by the publisher
		args []string
	}{
		{false, []string{"HELLO", "3"}},
		{false, []string{"SUBSCRIBE", "ch1", "ch2"}},
		{false, []string{"SET", "k", "v"}},
		{false, []string{"GET", "k"}},
		{false, []string{"HGETALL", "nosuch"}},
		{true, []string{"PUBLISH", "ch1", "hello"}},
		{false, []string{"PING"}},
		{false, []string{"PSUBSCRIBE", "c*"}},
		{true, []string{"PUBLISH", "ch2", "both"}},
		// (Named: with no names, redis-server leaves its channels in its
		// hash table's order, seeded per process; the proxy in name order.)
		{false, []string{"UNSUBSCRIBE", "ch1", "ch2"}},
		{false, []string{"PUNSUBSCRIBE"}},
		{false, []string{"PING"}},
	}
	var outs [2][]string
	for _, st := range steps {
		for i, sd := range sides {
			c := sd.sub
			if st.pub {
				c = sd.pub
			}
			c.Send(cmd(st.args...))
			if st.pub {
				outs[i] = append(outs[i], "pub:"+readReply(t, c))
				continue
			}
			// Every reply and push owed to the step, in order.
			for n := repliesOwed(st.args); n > 0; n-- {
				r := readReply(t, c)
				if st.args[0] == "HELLO" {
					r = helloID.ReplaceAllString(r, "ID")
				}
				outs[i] = append(outs[i], r)
			}
		}
		if st.pub {
			// The messages the publish caused.
			n := 1
			if st.args[1] == "ch2" {
				n = 2 // the channel and the pattern
			}
			for i, sd := range sides {
				for ; n > 0; n-- {
					outs[i] = append(outs[i], readReply(t, sd.sub))
				}
				if st.args[1] == "ch2" {
					n = 2
				} else {
					n = 1
				}
			}
		}
	}
	if fmt.Sprintf("%q", outs[0]) != fmt.Sprintf("%q", outs[1]) {
		t.Fatalf("through the proxy:\n%q\nredis-server:\n%q", outs[1], outs[0])
	}
	if !strings.HasPrefix(outs[0][1], ">3\r\n$9\r\nsubscribe\r\n") {
		t.Fatalf("redis-server's confirmation %q is not a push: the test is not testing RESP3", outs[0][1])
	}
}

// repliesOwed is how many replies (or pushes) a subscriber step gets.
func repliesOwed(args []string) int {
	switch args[0] {
	case "SUBSCRIBE", "UNSUBSCRIBE":
		return len(args) - 1
	}
	return 1
}

// With redis_auth, the RESP3 backend connections authenticate before their
// HELLO 3, and a client can authenticate and switch in one HELLO.
func TestRESP3DifferentialAuth(t *testing.T) {
	e := newRespDiffEnvAuth(t, "s3cret", 1)
	e.reset()
	direct := proxytest.Dial(t, e.direct.Addr)
	via := proxytest.Dial(t, e.proxy)
	for _, args := range [][]string{
		{"HELLO", "3"}, // -NOAUTH HELLO must be called ...
		{"GET", "k"},   // -NOAUTH
		{"HELLO", "3", "AUTH", "default", "wrong"},
		{"HELLO", "3", "AUTH", "default", "s3cret", "SETNAME", "me"},
		{"CLIENT", "GETNAME"},
		{"HSET", "h", "a", "1"},
		{"HGETALL", "h"},
		{"ZADD", "z", "2.5", "m"},
		{"ZRANGE", "z", "0", "-1", "WITHSCORES"},
		{"GET", "nosuch"},
	} {
		req := cmd(args...)
		direct.Send(req)
		via.Send(req)
		d, p := readReply(t, direct), readReply(t, via)
		d, p = helloID.ReplaceAllString(d, "ID"), helloID.ReplaceAllString(p, "ID")
		if d != p {
			t.Errorf("%q: through the proxy %q; redis-server %q", args, p, d)
		}
	}
}

// On a RESP3 backend connection a RESP3 null answers GET, but a push is
// never a reply: the connection is out of step, closed, and what was in
// flight on it fails with the server's name, never with another's value.
func TestRESP3BackendPushIsOutOfStep(t *testing.T) {
	pool := proxytest.RedisPool(t, "r", hostileRedis(t))
	proxytest.Start(t, proxy.Options{}, pool)
	const failed = "-ERR server r1 sent a malformed reply\r\n"
	for _, tc := range []struct{ name, send, want string }{
		{"RESP3 null answers GET", cmd("GET", "resp3null"), "_\r\n"},
		{"push where a reply is due", cmd("GET", "push"), failed},
		{"the request behind the push", cmd("GET", "push") + cmd("GET", "mine"), failed + failed},
		{"a new connection after it", cmd("GET", "mine"), "$4\r\nmine\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := proxytest.Dial(t, pool.Listen)
			c.Send(cmd("HELLO", "3"))
			if got := readReply(t, c); !strings.HasPrefix(got, "%7\r\n") {
				t.Fatalf("HELLO 3: %q", got)
			}
			c.Send(tc.send)
			if got := c.ReadN(len(tc.want)); got != tc.want {
				t.Fatalf("got %q; want %q", got, tc.want)
			}
		})
	}
}

// UNWATCH after WATCH (before MULTI) releases the watch on the server, as
// with redis-server: a later transaction is not aborted by a change to the
// key once watched. In both protocol versions.
func TestRESP3UnwatchReleases(t *testing.T) {
	e := newRespDiffEnv(t)
	for _, hello := range []string{"2", "3"} {
		e.reset()
		var outs [2]string
		for i, addr := range []string{e.direct.Addr, e.proxy} {
			c, o := proxytest.Dial(t, addr), proxytest.Dial(t, addr)
			for _, step := range []struct {
				c    *proxytest.Conn
				args []string
			}{
				{c, []string{"HELLO", hello}},
				{c, []string{"WATCH", "{a}k"}},
				{o, []string{"SET", "{a}k", "1"}},
				{c, []string{"UNWATCH"}},
				{c, []string{"MULTI"}},
				{c, []string{"HGETALL", "{a}h"}},
				{c, []string{"EXEC"}},
			} {
				step.c.Send(cmd(step.args...))
				outs[i] += helloID.ReplaceAllString(readReply(t, step.c), "ID")
			}
		}
		if outs[0] != outs[1] {
			t.Errorf("HELLO %s: through the proxy %q; redis-server %q", hello, outs[1], outs[0])
		}
	}
}

// Big RESP3 replies (over the size from which the proxy streams a reply
// instead of gathering it) come through byte for byte: a map, a set, and
// scores as doubles; for a subscribed client too, with a message published
// meanwhile arriving whole, before or after the reply, never inside it.
func TestRESP3BigReplies(t *testing.T) {
	// A listpack-encoded hash keeps its insertion order on every server
	// (a hashtable's order follows each process's random seed).
	args := []string{"--hash-max-listpack-value", "4096", "--hash-max-listpack-entries", "1000"}
	direct0, behind := testserver.Redis(t, args...), testserver.Redis(t, args...)
	pool := proxytest.RedisPool(t, "r", behind)
	proxytest.Start(t, proxy.Options{}, pool)
	e := struct {
		direct *testserver.Process
		proxy  string
	}{direct0, pool.Listen}
	val := strings.Repeat("x", 2000)
	fill := proxytest.Dial(t, e.direct.Addr)
	fillVia := proxytest.Dial(t, e.proxy)
	for _, c := range []*proxytest.Conn{fill, fillVia} {
		var batch strings.Builder
		for i := 0; i < 200; i++ {
			n := strconv.Itoa(i)
			batch.WriteString(cmd("HSET", "h", "f"+n, val))
			batch.WriteString(cmd("SADD", "s", n))
			batch.WriteString(cmd("ZADD", "z", n+".5", "m"+n+val[:400]))
		}
		c.Send(batch.String())
		for i := 0; i < 600; i++ {
			readReply(t, c)
		}
	}
	reqs := [][]string{
		{"HGETALL", "h"},
		{"SMEMBERS", "s"},
		{"ZRANGE", "z", "0", "-1", "WITHSCORES"},
	}
	direct := proxytest.Dial(t, e.direct.Addr)
	via := proxytest.Dial(t, e.proxy)
	for _, c := range []*proxytest.Conn{direct, via} {
		c.Send(cmd("HELLO", "3"))
		readReply(t, c)
	}
	for _, args := range reqs {
		direct.Send(cmd(args...))
		via.Send(cmd(args...))
		d, p := readReply(t, direct), readReply(t, via)
		if len(d) < 64<<10 && args[0] != "SMEMBERS" {
			t.Fatalf("%q: %d bytes; the test wants a reply the proxy streams", args, len(d))
		}
		if d != p {
			t.Errorf("%q: through the proxy %d bytes %q...; redis-server %d bytes %q...", args, len(p), clip(p), len(d), clip(d))
		}
	}
	// Subscribed: the big reply and a message published while it travels.
	pub := proxytest.Dial(t, e.proxy)
	via.Send(cmd("SUBSCRIBE", "ch"))
	if got := readReply(t, via); got != ">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n" {
		t.Fatalf("SUBSCRIBE: %q", got)
	}
	direct.Send(cmd("HGETALL", "h"))
	want := readReply(t, direct)
	msg := ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
	via.Send(cmd("HGETALL", "h"))
	pub.Send(cmd("PUBLISH", "ch", "hi"))
	if got := readReply(t, pub); got != ":1\r\n" {
		t.Fatalf("PUBLISH: %q", got)
	}
	first, second := readReply(t, via), readReply(t, via)
	if !(first == want && second == msg || first == msg && second == want) {
		t.Fatalf("subscribed: got %d bytes %q... then %d bytes %q...; want the %d-byte map and the message, whole",
			len(first), clip(first), len(second), clip(second), len(want))
	}
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80]
	}
	return s
}

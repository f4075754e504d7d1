package proxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// The Redis differential fuzz: the same request stream goes on one
// connection to a redis-server directly and, through the proxy, to an
// identical fresh redis-server (one backend, so the two keep the same
// state); the reply bytes, and whether the connection was closed, must be
// identical. docs/testing.md ("Redis differential fuzz") describes it.

// respDiffIdle is how long a side may stay silent before its stream counts
// as stuck (a partial request the server waits on, as Redis does); it only
// ends a wait, nothing asserts it.
const respDiffIdle = 300 * time.Millisecond

// respSentinel follows every stream: the CRLF ends a truncated inline line,
// the ECHO shows that everything before it was answered.
const respSentinelMarker = "respdiff-sentinel-7f3a"

var respSentinel = "\r\n*2\r\n$4\r\nECHO\r\n$" + strconv.Itoa(len(respSentinelMarker)) + "\r\n" + respSentinelMarker + "\r\n"

var respSentinelReply = "$" + strconv.Itoa(len(respSentinelMarker)) + "\r\n" + respSentinelMarker + "\r\n"

// respOutcome is what one side did with a stream.
type respOutcome struct {
	out    []byte
	closed bool // the server closed the connection
	stuck  bool // no sentinel reply and no close before the idle wait ran out
}

func (o respOutcome) String() string {
	state := "answered"
	switch {
	case o.closed:
		state = "closed"
	case o.stuck:
		state = "stuck"
	}
	return fmt.Sprintf("%s %q", state, o.out)
}

func (o respOutcome) equal(p respOutcome) bool {
	return bytes.Equal(o.out, p.out) && o.closed == p.closed && o.stuck == p.stuck
}

// respDiffEnv is a redis-server used directly, and a proxy over an identical
// one (or, in split mode, over several: every key lives on one of them, so
// the state seen through the proxy is still the direct server's).
type respDiffEnv struct {
	t      testing.TB
	direct *testserver.Process
	behind []*testserver.Process
	proxy  string
	admin  []*proxytest.Conn // FLUSHALL connections to direct and behind
	// split: replies the proxy makes because keys span servers
	// (-CROSSSLOT) are the listed exception; such a stream is skipped.
	split bool
}

func newRespDiffEnv(t testing.TB) *respDiffEnv {
	t.Helper()
	return newRespDiffEnvAuth(t, "", 1)
}

// newRespDiffEnvAuth is newRespDiffEnv with the proxy over n servers, all
// of them, and the proxy's pool, requiring password when it is not empty.
func newRespDiffEnvAuth(t testing.TB, password string, n int) *respDiffEnv {
	t.Helper()
	var args []string
	if password != "" {
		args = []string{"--requirepass", password}
	}
	e := &respDiffEnv{t: t, direct: testserver.Redis(t, args...), split: n > 1}
	for i := 0; i < n; i++ {
		e.behind = append(e.behind, testserver.Redis(t, args...))
	}
	pool := proxytest.RedisPool(t, "r", e.behind...)
	pool.RedisAuth = password
	// Redis's own limits rather than the proxy's tighter defaults
	// (documented exceptions: a bulk over limits.max_value_size or a
	// count over limits.max_multibulk is refused by the proxy where Redis
	// waits for the data).
	pool.Limits.MaxValueSize = 512 << 20
	pool.Limits.MaxMultibulk = math.MaxInt32
	pool.Limits.MaxClientBuffer = 513 << 20
	proxytest.Start(t, proxy.Options{}, pool)
	e.proxy = pool.Listen
	e.admin = append(e.admin, proxytest.Dial(t, e.direct.Addr))
	for _, b := range e.behind {
		e.admin = append(e.admin, proxytest.Dial(t, b.Addr))
	}
	if password != "" {
		for _, c := range e.admin {
			c.RoundTrip("AUTH "+password+"\r\n", "+OK\r\n")
		}
	}
	return e
}

// reset empties every server.
func (e *respDiffEnv) reset() {
	e.t.Helper()
	for _, c := range e.admin {
		c.RoundTrip("FLUSHALL\r\n", "+OK\r\n")
	}
}

// respExchange sends stream, and the sentinel when sentinel is set, on a
// new connection to addr and collects the replies until the sentinel's
// reply, a close, or (when the server waits on a partial request) idle of
// silence after at least minBytes have arrived.
func respExchange(t testing.TB, addr string, stream []byte, sentinel bool, minBytes int, idle time.Duration) respOutcome {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, proxytest.Timeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	msg := append([]byte(nil), stream...)
	if sentinel {
		msg = append(msg, respSentinel...)
	}
	werr := make(chan error, 1)
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(proxytest.Timeout))
		_, err := c.Write(msg)
		werr <- err
	}()
	var o respOutcome
	buf := make([]byte, 64<<10)
	hardDeadline := time.Now().Add(proxytest.Timeout)
	for {
		wait := idle
		if len(o.out) < minBytes {
			wait = time.Until(hardDeadline)
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		n, err := c.Read(buf)
		o.out = append(o.out, buf[:n]...)
		if sentinel && bytes.HasSuffix(o.out, []byte(respSentinelReply)) {
			o.out = o.out[:len(o.out)-len(respSentinelReply)]
			break
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				o.stuck = true
			} else {
				o.closed = true // EOF or reset
			}
			break
		}
	}
	if err := <-werr; err != nil && !o.closed {
		t.Fatalf("write to %s: %v", addr, err)
	}
	return o
}

// compare runs stream on both sides from empty servers and returns both
// outcomes and whether they agree. A disagreement is checked once more with
// a longer idle wait on the direct side, so a slow machine does not pass for
// a stuck server.
func (e *respDiffEnv) compare(stream []byte) (direct, viaProxy respOutcome, same bool) {
	for _, idle := range []time.Duration{respDiffIdle, 10 * respDiffIdle} {
		e.reset()
		direct = respExchange(e.t, e.direct.Addr, stream, true, 0, idle)
		min := len(direct.out)
		if !direct.stuck && !direct.closed {
			min = len(direct.out) + len(respSentinelReply)
		}
		viaProxy = respExchange(e.t, e.proxy, stream, true, min, respDiffIdle)
		if direct.equal(viaProxy) || e.exception(viaProxy) {
			return direct, viaProxy, true
		}
	}
	return direct, viaProxy, false
}

// respCrossSlot is the proxy's reply to keys that span servers.
var respCrossSlot = []byte("-CROSSSLOT Keys in request don't hash to the same server\r\n")

// exception reports whether the proxy's outcome holds a listed,
// proxy-made reply, which redis-server cannot give.
func (e *respDiffEnv) exception(o respOutcome) bool {
	return e.split && bytes.Contains(o.out, respCrossSlot)
}

// minimize shrinks a stream on which the two sides disagree: it drops
// chunks, then single bytes, keeping every cut that still disagrees.
func (e *respDiffEnv) minimize(stream []byte, budget int) []byte {
	cur := append([]byte(nil), stream...)
	for chunk := len(cur) / 2; chunk >= 1 && budget > 0; chunk /= 2 {
		for i := 0; i+chunk <= len(cur) && budget > 0; {
			cand := append(append([]byte(nil), cur[:i]...), cur[i+chunk:]...)
			budget--
			if _, _, same := e.compare(cand); !same {
				cur = cand
				continue
			}
			i += chunk
		}
	}
	return cur
}

// The request generator: a deterministic stream of commands over the
// forwarded classes, each as multibulk or inline, then mutated.

type respGen struct {
	r *rand.Rand
}

var respDiffKeys = []string{"k1", "k2", "k3", "ctr", "h", "l", "s", "z"}

func (g *respGen) key() string { return respDiffKeys[g.r.Intn(len(respDiffKeys))] }

func (g *respGen) value() string {
	const alphabet = "abcXYZ019 \"'\\\t-+:$*"
	switch g.r.Intn(6) {
	case 0:
		return strconv.Itoa(g.r.Intn(200) - 50)
	case 1:
		return ""
	}
	n := 1 + g.r.Intn(8)
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[g.r.Intn(len(alphabet))]
		if g.r.Intn(20) == 0 {
			b[i] = byte(g.r.Intn(256)) // NUL, CR, LF, control and high bytes too
		}
	}
	return string(b)
}

func (g *respGen) num() string { return strconv.Itoa(g.r.Intn(20) - 5) }

// command returns one command's arguments.
func (g *respGen) command() []string {
	k := g.key()
	switch g.r.Intn(66) {
	case 46:
		return []string{"LPOP", k, g.num()}
	case 47:
		return []string{"ZADD", "z", "INCR", g.num(), g.value()}
	case 48:
		return []string{"SET", k, g.value(), "GET"}
	case 49:
		return []string{"ZRANK", "z", g.value()}
	case 50:
		return []string{"SET", k, g.value(), "XX"}
	case 51:
		return []string{"HMGET", "h", g.value(), "n"}
	case 52:
		return []string{"HLEN", k} // not SMEMBERS: a hashtable set's order differs from server to server
	case 53:
		return []string{"GETDEL", k}
	case 54:
		return []string{"GETEX", k, "PERSIST"}
	case 55:
		return []string{"LINDEX", "l", g.num()}
	case 56:
		return []string{"LSET", "l", g.num(), g.value()}
	case 57:
		return []string{"INCRBYFLOAT", k, "1.5"}
	case 58:
		return []string{"HINCRBYFLOAT", "h", "f", "0.25"}
	case 59:
		return []string{"ZPOPMIN", k}
	case 60:
		return []string{"ZMSCORE", "z", g.value(), g.value()}
	case 61:
		return []string{"SMISMEMBER", "s", g.value(), g.value()}
	case 62:
		return []string{"RENAME", g.key(), g.key()}
	case 63:
		return []string{"PERSIST", k}
	case 64:
		return []string{"LREM", "l", g.num(), g.value()}
	case 65:
		return []string{"HKEYS", k}
	case 40:
		return []string{"GET"} // arity
	case 41:
		return []string{"GET", k, g.value()} // arity
	case 42: // unknown, the error quotes up to 128 bytes of arguments
		return []string{"NO" + g.value(), g.value(), strings.Repeat(g.value()+"x", g.r.Intn(40)), g.value()}
	case 43:
		return []string{"OBJECT", "ENCODING", k}
	case 44: // unknown subcommand
		return []string{"OBJECT", g.value() + "z", k}
	case 45:
		return []string{"SETRANGE", k, g.num(), g.value()}
	case 0:
		return []string{"SET", k, g.value()}
	case 1:
		return []string{"SET", k, g.value(), "NX"}
	case 2:
		return []string{"SET", k, g.value(), "EX", "1000"}
	case 3:
		return []string{"GET", k}
	case 4:
		return []string{"APPEND", k, g.value()}
	case 5:
		return []string{"STRLEN", k}
	case 6:
		return []string{"GETRANGE", k, "0", g.num()}
	case 7:
		return []string{"INCR", "ctr"}
	case 8:
		return []string{"DECR", k}
	case 9:
		return []string{"INCRBY", "ctr", g.num()}
	case 10:
		return []string{"DECRBY", k, g.num()}
	case 11:
		return []string{"HSET", "h", g.value(), g.value()}
	case 12:
		return []string{"HGET", "h", g.value()}
	case 13:
		return []string{"HGETALL", k}
	case 14:
		return []string{"HINCRBY", "h", "n", g.num()}
	case 15:
		return []string{"HDEL", "h", g.value()}
	case 16:
		return []string{"LPUSH", "l", g.value(), g.value()}
	case 17:
		return []string{"RPUSH", k, g.value()}
	case 18:
		return []string{"LRANGE", "l", "0", "-1"}
	case 19:
		return []string{"LPOP", k}
	case 20:
		return []string{"LLEN", "l"}
	case 21:
		return []string{"SADD", "s", g.value(), g.value()}
	case 22:
		return []string{"SISMEMBER", k, g.value()}
	case 23:
		return []string{"SCARD", "s"}
	case 24:
		return []string{"SREM", "s", g.value()}
	case 25:
		return []string{"ZADD", "z", g.num(), g.value()}
	case 26:
		return []string{"ZRANGE", "z", "0", "-1", "WITHSCORES"}
	case 27:
		return []string{"ZINCRBY", k, g.num(), "m"}
	case 28:
		return []string{"ZSCORE", "z", g.value()}
	case 29:
		return []string{"MGET", g.key(), g.key(), g.key()}
	case 30:
		return []string{"MSET", g.key(), g.value(), g.key(), g.value()}
	case 31:
		return []string{"DEL", g.key(), g.key()}
	case 32:
		return []string{"EXISTS", g.key(), g.key(), g.key()}
	case 33:
		return []string{"UNLINK", g.key()}
	case 34:
		return []string{"TOUCH", g.key(), g.key()}
	case 35:
		return []string{"TYPE", k}
	case 36:
		return []string{"EXPIRE", k, "1000"}
	case 37:
		return []string{"PING"}
	case 38:
		return []string{"ECHO", g.value()}
	default:
		return []string{"GETSET", k, g.value()}
	}
}

// encode writes args as multibulk or, one time in three, inline.
func (g *respGen) encode(dst []byte, args []string) []byte {
	if g.r.Intn(3) != 0 {
		dst = append(dst, '*')
		dst = strconv.AppendInt(dst, int64(len(args)), 10)
		dst = append(dst, "\r\n"...)
		for _, a := range args {
			dst = append(dst, '$')
			dst = strconv.AppendInt(dst, int64(len(a)), 10)
			dst = append(dst, "\r\n"...)
			dst = append(dst, a...)
			dst = append(dst, "\r\n"...)
		}
		return dst
	}
	for i, a := range args {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = g.inlineArg(dst, a)
	}
	if g.r.Intn(4) == 0 {
		return append(dst, '\n')
	}
	return append(dst, "\r\n"...)
}

func (g *respGen) inlineArg(dst []byte, a string) []byte {
	plain := a != ""
	for i := 0; i < len(a); i++ {
		switch c := a[i]; {
		case c <= ' ' || c >= 0x7f, c == '"', c == '\'', c == '\\':
			plain = false
		}
	}
	if plain && g.r.Intn(4) != 0 {
		return append(dst, a...)
	}
	if g.r.Intn(3) == 0 && !strings.ContainsAny(a, "'\\\x00\r\n") {
		return append(append(append(dst, '\''), a...), '\'')
	}
	dst = append(dst, '"')
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c == '\t' && g.r.Intn(2) == 0:
			dst = append(dst, '\\', 't')
		case c < ' ' && c != '\t' || c >= 0x7f || g.r.Intn(8) == 0:
			dst = append(dst, fmt.Sprintf("\\x%02x", c)...)
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// interesting bytes for mutations.
const respMutBytes = "\x00\r\n*$\"' \\\t\x01\x7f\xff-0123456789"

// mutate applies one random mutation.
func (g *respGen) mutate(s []byte) []byte {
	if len(s) == 0 {
		return s
	}
	i := g.r.Intn(len(s))
	switch g.r.Intn(7) {
	case 0: // byte flip
		s[i] ^= byte(1 << g.r.Intn(8))
	case 1: // replace with an interesting byte
		s[i] = respMutBytes[g.r.Intn(len(respMutBytes))]
	case 2: // truncate
		s = s[:i]
	case 3: // duplicate a slice
		j := i + g.r.Intn(min(32, len(s)-i)+1)
		s = append(s[:j:j], append(append([]byte(nil), s[i:j]...), s[j:]...)...)
	case 4: // insert NULs or control bytes
		ins := []byte{respMutBytes[g.r.Intn(len(respMutBytes))]}
		if g.r.Intn(2) == 0 {
			ins = append(ins, byte(g.r.Intn(32)))
		}
		s = append(s[:i:i], append(ins, s[i:]...)...)
	case 5: // a bad length: change a digit after '*' or '$'
		for j := i; j < len(s); j++ {
			if (s[j] == '*' || s[j] == '$') && j+1 < len(s) {
				d := []string{"-1", "0", "-5", "x", "99", "2147483648", "", "+1", "01", " 1"}[g.r.Intn(10)]
				k := j + 1
				for k < len(s) && s[k] >= '0' && s[k] <= '9' {
					k++
				}
				s = append(s[:j+1:j+1], append([]byte(d), s[k:]...)...)
				break
			}
		}
	default: // delete a byte
		s = append(s[:i:i], s[i+1:]...)
	}
	return s
}

// stream generates one request stream from seed.
func respStream(seed int64) []byte {
	g := &respGen{r: rand.New(rand.NewSource(seed))}
	var s []byte
	n := 1 + g.r.Intn(12)
	for i := 0; i < n; i++ {
		s = g.encode(s, g.command())
		if g.r.Intn(10) == 0 {
			s = append(s, "\r\n"...) // an empty line, skipped
		}
	}
	for m := g.r.Intn(4); m > 0; m-- {
		s = g.mutate(s)
	}
	return s
}

// runRespDiff compares count streams from seeds derived from base, or as
// many as fit in d when d > 0.
func runRespDiff(t *testing.T, e *respDiffEnv, base int64, count int, d time.Duration) {
	var stop time.Time
	if d > 0 {
		stop = time.Now().Add(d)
	}
	failures := 0
	stats := map[string]int{}
	for i := 0; d > 0 && time.Now().Before(stop) || d == 0 && i < count; i++ {
		seed := base*1_000_003 + int64(i)
		stream := respStream(seed)
		direct, via, same := e.compare(stream)
		switch {
		case e.exception(via):
			stats["exception"]++
		case direct.closed:
			stats["closed"]++
		case direct.stuck:
			stats["stuck"]++
		default:
			stats["answered"]++
		}
		if same {
			continue
		}
		min := e.minimize(stream, 200)
		md, mp, _ := e.compare(min)
		t.Errorf("seed %d: stream %q\n  direct: %v\n  proxy:  %v\nminimal %q\n  direct: %v\n  proxy:  %v",
			seed, stream, direct, via, min, md, mp)
		if failures++; failures >= 5 {
			t.Fatalf("stopping after %d disagreements", failures)
		}
	}
	t.Logf("outcomes: %v", stats)
}

// TestRespDiffFuzz is the short differential run of the normal suite: a
// fixed seed and a few derived ones. RESPDIFF_DURATION=10m (and optionally
// RESPDIFF_SEED) runs it for that long instead.
func TestRespDiffFuzz(t *testing.T) {
	respDiffFuzz(t, newRespDiffEnv(t), 1, 60)
}

// TestRespDiffFuzzSplit is TestRespDiffFuzz with the proxy over three
// servers, so that MGET, MSET, DEL, EXISTS, UNLINK and TOUCH are split and
// merged; it takes RESPDIFF_DURATION and RESPDIFF_SEED too.
func TestRespDiffFuzzSplit(t *testing.T) {
	respDiffFuzz(t, newRespDiffEnvAuth(t, "", 3), 2, 40)
}

func respDiffFuzz(t *testing.T, e *respDiffEnv, base int64, count int) {
	if s := os.Getenv("RESPDIFF_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("RESPDIFF_SEED: %v", err)
		}
		base = v
	}
	if s := os.Getenv("RESPDIFF_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("RESPDIFF_DURATION: %v", err)
		}
		runRespDiff(t, e, base, 0, d)
		return
	}
	runRespDiff(t, e, base, count, 0)
}

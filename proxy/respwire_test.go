package proxy_test

import (
	"strconv"
	"strings"
	"testing"
)

// respWireCases are requests Redis reads in ways a proxy easily gets wrong,
// with what redis-server 7.0 answers (then the sentinel's ECHO, left out):
// each runs on redis-server directly and through the proxy, and both must
// give exactly want. The differential fuzz's findings are here too, in
// their minimal form.
var respWireCases = []struct {
	name, stream string
	want         respOutcome
	noSentinel   bool // the stream is sent alone, without the sentinel
}{
	// Found by the fuzz: Redis skips the two bytes after bulk data, and the
	// byte after a length line's CR, without looking at them; the proxy
	// refused the request and closed.
	{"bulk data followed by other bytes", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nvAB*2\r\n$3\r\nGET\r\n$1\r\nkXY",
		respOutcome{out: []byte("+OK\r\n$1\r\nv\r\n")}, false},
	{"count CR followed by another byte", "*2\rX$3\r\nGET\r\n$1\r\nk\r\n", respOutcome{out: []byte("$-1\r\n")}, false},
	{"length CR followed by another byte", "*2\r\n$3\rXGET\r\n$1\rXk\r\n", respOutcome{out: []byte("$-1\r\n")}, false},
	// Found by the fuzz: '$' is checked only once a whole line is in, and
	// CR or LF in the message become spaces.
	{"CR where a length was expected", "*1\r\n\r\nPING\r\n", respOutcome{closed: true,
		out: []byte("-ERR Protocol error: expected '$', got ' '\r\n")}, false},
	{"LF where a length was expected", "*1\r\n\n\r\n", respOutcome{closed: true,
		out: []byte("-ERR Protocol error: expected '$', got ' '\r\n")}, false},
	{"other byte where a length was expected", "SET k v\r\n*1\r\n:3\r\n", respOutcome{closed: true,
		out: []byte("+OK\r\n-ERR Protocol error: expected '$', got ':'\r\n")}, false},
	// A NUL hides the line end from strchr(3): Redis waits for more.
	{"NUL before an inline newline", "SET k v\r\nGET k\x00\r\nGET k\r\n", respOutcome{stuck: true, out: []byte("+OK\r\n")}, false},
	{"NUL before a count's CR", "*1\x00\r\n$4\r\nPING\r\n", respOutcome{stuck: true, out: []byte{}}, false},
	{"NUL inside bulk data", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\na\x00b\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		respOutcome{out: []byte("+OK\r\n$3\r\na\x00b\r\n")}, false},
	// Error texts are C strings: they end at a NUL.
	{"unknown command with NULs", "*3\r\n$5\r\nNO\x00PE\r\n$3\r\na\x00b\r\n$1\r\nc\r\n", respOutcome{
		out: []byte("-ERR unknown command 'NO', with args beginning with: 'a' 'c' \r\n")}, false},
	{"unknown command, long arguments", "NOSUCH " + strings.Repeat("a", 100) + " " + strings.Repeat("b", 100) + " c\r\n",
		respOutcome{out: []byte("-ERR unknown command 'NOSUCH', with args beginning with: '" + strings.Repeat("a", 100) +
			"' '" + strings.Repeat("b", 25) + "' \r\n")}, false},
	{"unknown command, long name", strings.Repeat("x", 200) + " a\r\n", respOutcome{
		out: []byte("-ERR unknown command '" + strings.Repeat("x", 128) + "', with args beginning with: 'a' \r\n")}, false},
	{"unknown command, NUL in the first argument", "*3\r\n$2\r\nNO\r\n$2\r\n\x00a\r\n$1\r\nb\r\n", respOutcome{
		out: []byte("-ERR unknown command 'NO', with args beginning with: '' 'b' \r\n")}, false},
	{"unknown command, CR LF in name", "*1\r\n$4\r\nA\r\nB\r\n", respOutcome{
		out: []byte("-ERR unknown command 'A  B', with args beginning with: \r\n")}, false},
	{"unknown subcommand", "object nosuch k\r\n", respOutcome{
		out: []byte("-ERR unknown subcommand 'nosuch'. Try OBJECT HELP.\r\n")}, false},
	{"arity", "GET\r\nGET a b\r\n", respOutcome{out: []byte("-ERR wrong number of arguments for 'get' command\r\n" +
		"-ERR wrong number of arguments for 'get' command\r\n")}, false},
	// Found by the fuzz: PING checks its own arity.
	{"PING with two arguments", "PING \"\" 0\r\nPING a\r\nPING\r\n", respOutcome{out: []byte(
		"-ERR wrong number of arguments for 'ping' command\r\n$1\r\na\r\n+PONG\r\n")}, false},
	{"AUTH without a password configured", "AUTH x\r\nAUTH a b c\r\nAUTH default x\r\nAUTH other x\r\n", respOutcome{out: []byte(
		"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n" +
			"-ERR syntax error\r\n+OK\r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n")}, false},
	{"container alone", "OBJECT\r\n", respOutcome{out: []byte("-ERR wrong number of arguments for 'object' command\r\n")}, false},
	// Inline commands.
	{"inline quotes and escapes", "SET k \"\\x41\\x4g\\z\\n\"\r\nGET k\r\n", respOutcome{out: []byte("+OK\r\n$6\r\nAx4gz\n\r\n")}, false},
	{"inline vertical tab inside an argument", "\v SET k a\vb\nGET k\n", respOutcome{out: []byte("+OK\r\n$3\r\na\vb\r\n")}, false},
	{"inline unbalanced quotes", "SET k v\r\nSET k \"v\r\nGET k\r\n", respOutcome{closed: true,
		out: []byte("+OK\r\n-ERR Protocol error: unbalanced quotes in request\r\n")}, false},
	{"inline quote then text", "GET \"k\"x\r\n", respOutcome{closed: true,
		out: []byte("-ERR Protocol error: unbalanced quotes in request\r\n")}, false},
	{"inline too big", strings.Repeat("a", 300000), respOutcome{closed: true,
		out: []byte("-ERR Protocol error: too big inline request\r\n")}, true},
	// Multibulk counts and lengths. (Lines over 64 KiB are sent without
	// any line end, not even the sentinel's: how much of a longer line
	// Redis, or the proxy, has when it looks depends on its reads.)
	{"empty and negative multibulk skipped", "*0\r\n*-1\r\n*-7\r\n\r\nPING\r\n", respOutcome{out: []byte("+PONG\r\n")}, false},
	{"count too big", "*2147483648\r\n", respOutcome{closed: true, out: []byte("-ERR Protocol error: invalid multibulk length\r\n")}, false},
	{"count with plus", "*+1\r\n$4\r\nPING\r\n", respOutcome{closed: true, out: []byte("-ERR Protocol error: invalid multibulk length\r\n")}, false},
	{"negative bulk length", "*1\r\n$-1\r\n", respOutcome{closed: true, out: []byte("-ERR Protocol error: invalid bulk length\r\n")}, false},
	{"bulk length leading zero", "*1\r\n$04\r\nPING\r\n", respOutcome{closed: true, out: []byte("-ERR Protocol error: invalid bulk length\r\n")}, false},
	{"bulk length over proto-max-bulk-len", "*1\r\n$536870913\r\n", respOutcome{closed: true, out: []byte("-ERR Protocol error: invalid bulk length\r\n")}, false},
	{"count line too big", "*" + strings.Repeat("1", 300000), respOutcome{closed: true, out: []byte("-ERR Protocol error: too big mbulk count string\r\n")}, true},
	{"bulk line too big", "*1\r\n$" + strings.Repeat("1", 300000), respOutcome{closed: true, out: []byte("-ERR Protocol error: too big bulk count string\r\n")}, true},
	// Redis closes on what looks like HTTP, without a reply.
	{"POST", "POST / HTTP/1.1\r\nHost: x\r\n\r\n", respOutcome{closed: true, out: []byte{}}, false},
	{"Host:", "*2\r\n$5\r\nhOsT:\r\n$1\r\nx\r\n", respOutcome{closed: true, out: []byte{}}, false},
}

func TestRespWireLikeRedis(t *testing.T) {
	e := newRespDiffEnv(t)
	for _, tc := range respWireCases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			var direct, via respOutcome
			if tc.noSentinel {
				e.reset()
				direct = respExchange(t, e.direct.Addr, []byte(tc.stream), false, 0, 10*respDiffIdle)
				via = respExchange(t, e.proxy, []byte(tc.stream), false, len(direct.out), 10*respDiffIdle)
			} else {
				direct, via, _ = e.compare([]byte(tc.stream))
			}
			if !direct.equal(tc.want) {
				t.Errorf("redis-server: got %v; want %v", direct, tc.want)
			}
			if !via.equal(tc.want) {
				t.Errorf("proxy: got %v; want %v", via, tc.want)
			}
		})
	}
}

// TestRespWireUnauthenticatedLimits: before AUTH, Redis takes at most 10
// multibulk arguments of at most 16384 bytes; the proxy, when its pool has a
// password, applies the same limits with the same words.
func TestRespWireUnauthenticatedLimits(t *testing.T) {
	e := newRespDiffEnvAuth(t, "s3cret", 1)
	const auth = "AUTH s3cret\r\n"
	mget := func(n int) string {
		s := "*" + strconv.Itoa(n+1) + "\r\n$4\r\nMGET\r\n"
		for i := 0; i < n; i++ {
			s += "$1\r\nk\r\n"
		}
		return s
	}
	tests := []struct {
		name, stream string
		want         respOutcome
	}{
		{"NOAUTH", "GET k\r\n" + auth, respOutcome{out: []byte("-NOAUTH Authentication required.\r\n+OK\r\n")}},
		{"arity before NOAUTH", "GET k k\r\n" + auth, respOutcome{
			out: []byte("-ERR wrong number of arguments for 'get' command\r\n+OK\r\n")}},
		{"10 arguments", mget(9) + auth, respOutcome{out: []byte("-NOAUTH Authentication required.\r\n+OK\r\n")}},
		{"11 arguments", mget(10) + auth, respOutcome{closed: true,
			out: []byte("-ERR Protocol error: unauthenticated multibulk length\r\n")}},
		{"AUTH with three arguments", "AUTH a b c\r\n" + auth, respOutcome{out: []byte("-ERR syntax error\r\n+OK\r\n")}},
		{"a failed AUTH leaves the client authenticated", auth + "AUTH wrong\r\nAUTH default wrong\r\nGET k\r\n", respOutcome{
			out: []byte("+OK\r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n" +
				"-WRONGPASS invalid username-password pair or user is disabled.\r\n$-1\r\n")}},
		{"11 inline arguments", "MGET k k k k k k k k k k\r\n" + auth, respOutcome{
			out: []byte("-NOAUTH Authentication required.\r\n+OK\r\n")}},
		{"11 arguments after AUTH", auth + mget(10), respOutcome{
			out: []byte("+OK\r\n*10\r\n" + strings.Repeat("$-1\r\n", 10))}},
		{"16384-byte argument", "*2\r\n$4\r\nAUTH\r\n$16384\r\n" + strings.Repeat("x", 16384) + "\r\n" + auth, respOutcome{
			out: []byte("-WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n")}},
		{"16385-byte argument", "*2\r\n$4\r\nAUTH\r\n$16385\r\n" + strings.Repeat("x", 16385) + "\r\n" + auth, respOutcome{
			closed: true, out: []byte("-ERR Protocol error: unauthenticated bulk length\r\n")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			direct, via, _ := e.compare([]byte(tc.stream))
			if !direct.equal(tc.want) {
				t.Errorf("redis-server: got %v; want %v", direct, tc.want)
			}
			if !via.equal(tc.want) {
				t.Errorf("proxy: got %v; want %v", via, tc.want)
			}
		})
	}
}

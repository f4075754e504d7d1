package resp

import "testing"

// A connection that did HELLO 3 is framed with ParseReplyResume: every type
// redis-server 7 sends, attributes framed with the reply they annotate, and
// the streamed forms (which redis 7 never sends) refused.
func TestParseReplyRESP3Strict(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int // 1: framed whole; -1: malformed
	}{
		{"%2\r\n+a\r\n,1.5\r\n+b\r\n_\r\n", 1},
		{"~2\r\n#t\r\n#f\r\n", 1},
		{"(12345678901234567890\r\n", 1},
		{"=8\r\ntxt:abcd\r\n", 1},
		{"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n", 1},
		{">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n", 1},
		{"!5\r\nERR x\r\n", 1},
		{"$?\r\n;3\r\nabc\r\n;0\r\n", -1},
		{"*?\r\n:1\r\n.\r\n", -1},
		{"%?\r\n", -1},
		{";3\r\nabc\r\n", -1},
		{"_x\r\n", -1},
		{"#y\r\n", -1},
		{"!-1\r\n", -1},
	} {
		var st ReplyState
		n, _, err := ParseReplyResume([]byte(tc.in), &st)
		if tc.want < 0 {
			if err == nil {
				t.Errorf("%q: framed %d; want malformed", tc.in, n)
			}
			continue
		}
		if err != nil || n != len(tc.in) {
			t.Errorf("%q: got %d, %v; want %d", tc.in, n, err, len(tc.in))
		}
	}
}

// What a RESP2 command answers, typed as RESP3 on a HELLO 3 connection.
func TestReplyTypesRESP3(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		t    byte
		want bool
	}{
		{"hgetall", '%', true},
		{"smembers", '~', true},
		{"zscore", ',', true},
		{"get", '_', true},
		{"lpop", '_', true},
		{"incr", '_', false},
		{"incr", '%', false},
		{"get", '%', false},
		{"zadd", ',', true},
		{"sismember", '#', true},
		{"get", '!', true},
		{"get", '>', false},
	} {
		if got := replyTypes(tc.cmd).Allows(tc.t); got != tc.want {
			t.Errorf("%s answered by %q: %v; want %v", tc.cmd, tc.t, got, tc.want)
		}
	}
}

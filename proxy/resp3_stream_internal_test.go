package proxy

import "testing"

// A streamed (big) reply is framed as strictly as one framed whole: RESP3
// types only on a connection that did HELLO 3, and never a push where a
// reply starts.
func TestRESP3CursorStrict(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cur    *respCursor
		reply  string
		wantOK bool
	}{
		{"RESP3 map on a RESP3 connection", &respCursor{noPush: true}, "%1\r\n+a\r\n*1\r\n,1.5\r\n", true},
		{"RESP3 map on a RESP2 connection", &respCursor{resp2: true}, "%1\r\n+a\r\n*0\r\n", false},
		{"null inside an array on a RESP2 connection", &respCursor{resp2: true}, "*2\r\n$1\r\na\r\n_\r\n", false},
		{"push on a RESP3 connection", &respCursor{noPush: true}, ">2\r\n+a\r\n+b\r\n", false},
		{"push inside an array", &respCursor{noPush: true}, "*1\r\n>1\r\n+a\r\n", true},
		{"null with data", &respCursor{noPush: true}, "_x\r\n", false},
		{"bad boolean", &respCursor{noPush: true}, "#x\r\n", false},
		{"streamed string", &respCursor{noPush: true}, "$?\r\n;3\r\nabc\r\n;0\r\n", false},
		{"streamed aggregate", &respCursor{noPush: true}, "*?\r\n:1\r\n.\r\n", false},
	} {
		end, err := feedAll(tc.cur, []byte(tc.reply), 1)
		if ok := err == nil && end == len(tc.reply); ok != tc.wantOK {
			t.Errorf("%s: %q framed %v (end %d, %v); want %v", tc.name, tc.reply, ok, end, err, tc.wantOK)
		}
	}
}

package soak

import (
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/loadgen"
	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// TestMultiGetChecker runs the soak's multi-get checker against a real
// memcached and a real redis-server holding loadgen's keys: all hits, then
// a wrong value under one key is caught, then its deletion is a miss and
// not a wrong value.
func TestMultiGetChecker(t *testing.T) {
	for _, tc := range []struct {
		proto                 loadgen.Protocol
		start                 func(testing.TB, ...string) *testserver.Process
		set, setWant, del, ok string
	}{
		{loadgen.Memcache, testserver.Memcached, "set mg:5 0 0 5\r\nwrong\r\n", "STORED\r\n", "delete mg:5\r\n", "DELETED\r\n"},
		{loadgen.Redis, testserver.Redis, "SET mg:5 wrong\r\n", "+OK\r\n", "DEL mg:5\r\n", ":1\r\n"},
	} {
		t.Run(tc.proto.String(), func(t *testing.T) {
			srv := tc.start(t)
			res, err := loadgen.Run(t.Context(), loadgen.Config{Addr: srv.Addr, Protocol: tc.proto, Keys: 10, KeyPrefix: "mg:",
				ValueSize: 50, Requests: 10, Preload: true, Verify: true})
			if err != nil || res.Errors+res.Lost > 0 {
				t.Fatalf("preload: %v %+v", err, res)
			}
			m := &multiGet{proto: tc.proto, addr: srv.Addr, prefix: "mg:", keys: 10, valueSize: 50, width: 8}
			run := func() mgStats { return m.run(t.Context(), time.Now().Add(300*time.Millisecond), 1) }

			st := run()
			if st.requests == 0 || st.wrong+st.misses+st.errors+st.connFailures > 0 || st.hits != st.keys {
				t.Fatalf("all keys stored: %+v; want only hits", st)
			}
			c := proxytest.Dial(t, srv.Addr)
			c.RoundTrip(tc.set, tc.setWant)
			// 8 of 10 keys per request: nearly every request asks for mg:5.
			if st := run(); st.wrong == 0 || !strings.Contains(st.firstWrong, `mg:5 = "wrong\r\n"`) {
				t.Fatalf("mg:5 holds a wrong value: %+v; want it reported", st)
			}
			c.RoundTrip(tc.del, tc.ok)
			if st := run(); st.wrong > 0 || st.misses == 0 || st.requests == 0 {
				t.Fatalf("mg:5 deleted: %+v; want misses and no wrong value", st)
			}
		})
	}
}

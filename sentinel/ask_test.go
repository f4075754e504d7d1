package sentinel_test

import (
	"bufio"
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/respclient"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/sentinel"
)

// fakeSentinel answers each SENTINEL subcommand with the raw reply given
// for it. Failure paths only: the behaviour is proven against real
// Sentinels in sentinel_test.go.
func fakeSentinel(t *testing.T, replies map[string]string) *respclient.Conn {
	t.Helper()
	addr := testserver.FakeServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
			var args []string
			for i := 0; i < n; i++ {
				_, _ = r.ReadString('\n') // $len
				a, _ := r.ReadString('\n')
				args = append(args, strings.TrimSpace(a))
			}
			reply, ok := replies[args[1]]
			if !ok {
				reply = "-ERR unknown\r\n"
			}
			if _, err := c.Write([]byte(reply)); err != nil {
				return
			}
		}
	})
	c, err := respclient.Dial(context.Background(), addr, "", "", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func bulk(s string) string { return "$" + strconv.Itoa(len(s)) + "\r\n" + s + "\r\n" }

func replica(ip, port, flags string) string {
	return "*6\r\n" + bulk("ip") + bulk(ip) + bulk("port") + bulk(port) + bulk("flags") + bulk(flags)
}

// Replicas flagged s_down, o_down or disconnected are left out; the rest
// come back sorted.
func TestAskFiltersReplicas(t *testing.T) {
	c := fakeSentinel(t, map[string]string{
		"get-master-addr-by-name": "*2\r\n" + bulk("10.0.0.1") + bulk("6379"),
		"replicas": "*5\r\n" + replica("10.0.0.3", "6379", "slave") + replica("10.0.0.4", "6379", "slave,s_down") +
			replica("10.0.0.5", "6379", "slave,o_down") + replica("10.0.0.6", "6379", "slave,disconnected") +
			replica("10.0.0.2", "6379", "slave"),
	})
	m, err := sentinel.Ask(c, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Addr != "10.0.0.1:6379" || !slices.Equal(m.Replicas, []string{"10.0.0.2:6379", "10.0.0.3:6379"}) {
		t.Fatalf("got %+v", m)
	}
}

// Odd answers are errors naming the command, never a crash or a made-up
// address.
func TestAskBadAnswers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replies map[string]string
		want    string
	}{
		{"unknown master", map[string]string{"get-master-addr-by-name": "*-1\r\n"}, "does not monitor it"},
		{"error", map[string]string{"get-master-addr-by-name": "-NOAUTH Authentication required.\r\n"}, "NOAUTH"},
		{"one element", map[string]string{"get-master-addr-by-name": "*1\r\n" + bulk("10.0.0.1")}, "unexpected reply"},
		{"empty host", map[string]string{"get-master-addr-by-name": "*2\r\n" + bulk("") + bulk("6379")}, "unexpected reply"},
		{"integer port", map[string]string{"get-master-addr-by-name": "*2\r\n" + bulk("h") + ":6379\r\n"}, "unexpected reply"},
		{"replicas not an array", map[string]string{"get-master-addr-by-name": "*2\r\n" + bulk("h") + bulk("1"), "replicas": "+OK\r\n"}, "replicas: unexpected reply"},
		{"huge array", map[string]string{"get-master-addr-by-name": "*999999999\r\n"}, "array length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sentinel.Ask(fakeSentinel(t, tc.replies), "m1")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want an error with %q", err, tc.want)
			}
		})
	}
	// A replica entry without an address is skipped, not reported as ":".
	c := fakeSentinel(t, map[string]string{
		"get-master-addr-by-name": "*2\r\n" + bulk("h") + bulk("1"),
		"replicas":                "*2\r\n*2\r\n" + bulk("flags") + bulk("slave") + "+junk\r\n",
	})
	if m, err := sentinel.Ask(c, "m1"); err != nil || len(m.Replicas) != 0 {
		t.Fatalf("got %+v, %v; want no replicas", m, err)
	}
}

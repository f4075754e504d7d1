package proxy_test

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"syscall"
	"testing"

	"github.com/cacheproxy/cacheproxy/internal/proxytest"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
	"github.com/cacheproxy/cacheproxy/proxy"
)

// BenchmarkRESP3 compares a RESP2 client with a RESP3 one (HELLO 3 first)
// through the proxy over one redis-server, 16 requests in flight: ns/op,
// and cpu-ns/op, the CPU time of this process (the proxy and this client,
// which does the same work in both) per request.
func BenchmarkRESP3(b *testing.B) {
	rd := testserver.Redis(b)
	pool := proxytest.RedisPool(b, "r", rd)
	proxytest.Start(b, proxy.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, pool)
	c := proxytest.Dial(b, rd.Addr)
	c.RoundTrip("SET k v\r\n", "+OK\r\n")
	c.RoundTrip("HSET h f v\r\n", ":1\r\n")
	for _, bc := range []struct{ name, req string }{
		{"GET", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"},
		{"HGETALL", "*2\r\n$7\r\nHGETALL\r\n$1\r\nh\r\n"},
	} {
		for _, proto := range []string{"2", "3"} {
			b.Run(bc.name+"/RESP"+proto, func(b *testing.B) {
				benchHello(b, pool.Listen, proto, []byte(bc.req), []byte("v\r\n"), 16)
			})
		}
	}
}

// benchHello is benchRoundTrips on a connection that sent HELLO proto.
func benchHello(b *testing.B, addr, proto string, req, end []byte, depth int) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	if _, err := io.WriteString(c, "HELLO "+proto+"\r\n"); err != nil {
		b.Fatal(err)
	}
	for { // the reply ends with the empty modules array
		line, err := r.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		if line == "*0\r\n" {
			break
		}
	}
	batch := bytes.Repeat(req, depth)
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += depth {
		if _, err := c.Write(batch); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < depth; {
			line, err := r.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if bytes.HasSuffix(line, end) {
				got++
			}
		}
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}

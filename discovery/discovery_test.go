package discovery

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

func answer(kind, body string) string {
	return fmt.Sprintf("%s 0 %d\r\n%s\r\nEND\r\n", kind, len(body), body)
}

func TestReadAnswer(t *testing.T) {
	good := "12\nmyCluster.0001.cache.amazonaws.com|10.82.235.120|11211 myCluster.0002.cache.amazonaws.com||11212\n"
	want := Cluster{Version: 12, Nodes: []Node{
		{"myCluster.0001.cache.amazonaws.com", "10.82.235.120", 11211},
		{"myCluster.0002.cache.amazonaws.com", "", 11212},
	}}
	for _, kind := range []string{"CONFIG cluster", "VALUE AmazonElastiCache:cluster"} {
		c, err := ReadAnswer(bufio.NewReader(strings.NewReader(answer(kind, good))))
		if err != nil || !c.Equal(want) {
			t.Fatalf("%s: got %+v, %v; want %+v", kind, c, err, want)
		}
	}
	if a := want.Nodes[0].Addr(); a != "10.82.235.120:11211" {
		t.Errorf("Addr with ip = %q", a)
	}
	if a := want.Nodes[1].Addr(); a != "myCluster.0002.cache.amazonaws.com:11212" {
		t.Errorf("Addr without ip = %q", a)
	}
	bad := map[string]string{
		"error":          "ERROR\r\n",
		"miss":           "END\r\n",
		"server error":   "SERVER_ERROR out of memory\r\n",
		"bare lf":        "CONFIG cluster 0 3\n",
		"short body":     "CONFIG cluster 0 100\r\n1\nh|1.2.3.4|1\n\r\nEND\r\n",
		"long length":    "CONFIG cluster 0 99999999\r\n",
		"neg length":     "CONFIG cluster 0 -1\r\n",
		"plus length":    "CONFIG cluster 0 +5\r\n",
		"bad flags":      "CONFIG cluster x 3\r\n",
		"no end":         answer("CONFIG cluster", "1\nh|1.2.3.4|1\n")[:30] + "\r\nQUIT\r\n",
		"other key":      answer("VALUE other", "1\nh|1.2.3.4|1\n"),
		"bad version":    answer("CONFIG cluster", "x\nh|1.2.3.4|1\n"),
		"neg version":    answer("CONFIG cluster", "-1\nh|1.2.3.4|1\n"),
		"no nodes":       answer("CONFIG cluster", "1\n\n"),
		"one line":       answer("CONFIG cluster", "1\n"),
		"no final lf":    answer("CONFIG cluster", "1\nh|1.2.3.4|1"),
		"three lines":    answer("CONFIG cluster", "1\nh|1.2.3.4|1\nx\n"),
		"two fields":     answer("CONFIG cluster", "1\nh|1\n"),
		"four fields":    answer("CONFIG cluster", "1\nh|1.2.3.4|1|2\n"),
		"empty host":     answer("CONFIG cluster", "1\n|1.2.3.4|1\n"),
		"bad ip":         answer("CONFIG cluster", "1\nh|1.2.3|1\n"),
		"port 0":         answer("CONFIG cluster", "1\nh|1.2.3.4|0\n"),
		"port big":       answer("CONFIG cluster", "1\nh|1.2.3.4|65536\n"),
		"port word":      answer("CONFIG cluster", "1\nh|1.2.3.4|abc\n"),
		"double space":   answer("CONFIG cluster", "1\nh|1.2.3.4|1  g|1.2.3.5|1\n"),
		"duplicate host": answer("CONFIG cluster", "1\nh|1.2.3.4|1 h|1.2.3.5|1\n"),
		"long line":      strings.Repeat("x", 2000) + "\r\n",
		"eof":            "CONFIG clu",
	}
	for name, in := range bad {
		if c, err := ReadAnswer(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("%s: %q parsed as %+v, want an error", name, in, c)
		}
	}
}

// endpoint serves body to "config get cluster" (or ERROR then the
// pre-1.4.14 key when legacy) and counts the commands it got.
func endpoint(t *testing.T, body string, legacy bool, got chan<- string) string {
	return testserver.FakeServer(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			got <- line
			switch {
			case line == "config get cluster\r\n" && !legacy:
				_, _ = c.Write([]byte(answer("CONFIG cluster", body)))
			case line == "get AmazonElastiCache:cluster\r\n" && legacy:
				_, _ = c.Write([]byte(answer("VALUE AmazonElastiCache:cluster", body)))
			default:
				_, _ = c.Write([]byte("ERROR\r\n"))
			}
		}
	})
}

func TestFetchFallsBackOnError(t *testing.T) {
	body := "7\na.example|127.0.0.1|11211 b.example|127.0.0.2|11211\n"
	for _, legacy := range []bool{false, true} {
		got := make(chan string, 4)
		addr := endpoint(t, body, legacy, got)
		c, err := Fetch(context.Background(), addr, 5*time.Second, nil)
		if err != nil {
			t.Fatalf("legacy %v: %v", legacy, err)
		}
		if c.Version != 7 || len(c.Nodes) != 2 || c.Nodes[1].Host != "b.example" {
			t.Fatalf("legacy %v: got %+v", legacy, c)
		}
		want := []string{"config get cluster\r\n"}
		if legacy {
			want = append(want, "get AmazonElastiCache:cluster\r\n")
		}
		for _, w := range want {
			if g := <-got; g != w {
				t.Fatalf("legacy %v: endpoint got %q, want %q", legacy, g, w)
			}
		}
	}
}

func TestFetchUnreachableAndSilent(t *testing.T) {
	if _, err := Fetch(context.Background(), testserver.FreeAddr(t), time.Second, nil); err == nil {
		t.Fatal("Fetch from a closed port: no error")
	}
	silent := testserver.FakeServer(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }) // reads, never answers
	start := time.Now()
	if _, err := Fetch(context.Background(), silent, 200*time.Millisecond, nil); err == nil {
		t.Fatal("Fetch from a silent endpoint: no error")
	}
	// The timeout bounds the exchange; 2s leaves slack for a loaded box.
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Fetch took %v with a 200ms timeout", d)
	}
}

func TestWatchReportsChangesOnly(t *testing.T) {
	got := make(chan string, 100)
	addr := endpoint(t, "3\nh|127.0.0.1|1\n", false, got)
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan Cluster, 10)
	done := make(chan error)
	go func() {
		done <- Watch(ctx, Options{Endpoint: addr, Interval: 10 * time.Millisecond,
			OnChange: func(c Cluster) { changes <- c }})
	}()
	c := <-changes
	if c.Version != 3 {
		t.Fatalf("first change %+v", c)
	}
	for range 5 { // five more asks, all the same answer
		<-got
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Watch returned %v", err)
	}
	if len(changes) != 0 {
		t.Fatalf("the same answer was reported again: %+v", <-changes)
	}
}

func FuzzReadAnswer(f *testing.F) {
	f.Add(answer("CONFIG cluster", "1\nh|1.2.3.4|11211\n"))
	f.Add(answer("VALUE AmazonElastiCache:cluster", "2\na||1 b|::1|2\n"))
	f.Add("ERROR\r\n")
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ReadAnswer(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		if len(c.Nodes) == 0 {
			t.Fatalf("%q: no error and no nodes", in)
		}
		for _, n := range c.Nodes {
			if n.Host == "" || n.Port <= 0 || n.Port > 65535 {
				t.Fatalf("%q: bad node %+v accepted", in, n)
			}
		}
	})
}

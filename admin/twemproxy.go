package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cacheproxy/cacheproxy/proxy"
)

// hostname returns the host's name for the stats JSON's "source", or
// "unknown".
func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

// serveStats accepts stats connections until ln is closed (Run closes it
// when its context is done), writes the twemproxy JSON to each and closes
// it, and waits for the writes in progress before returning.
func (s *Server) serveStats(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	var tempDelay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// Transient errors such as EMFILE: back off as net/http does.
			if tempDelay == 0 {
				tempDelay = 5 * time.Millisecond
			} else if tempDelay *= 2; tempDelay > time.Second {
				tempDelay = time.Second
			}
			s.log.Warn("stats accept", "err", err, "retry_in", tempDelay)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(tempDelay):
			}
			continue
		}
		tempDelay = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			_ = c.SetWriteDeadline(time.Now().Add(statsWriteTimeout))
			if _, err := c.Write(s.StatsJSON()); err != nil {
				s.log.Debug("stats write", "remote", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// StatsJSON returns the twemproxy-compatible stats document for the
// Source's figures now: nutcracker 0.5.0's field names and nesting, one
// object per pool holding its counters and one object per server.
//
// Fields the proxy does not track are 0: in_queue, in_queue_bytes and
// out_queue_bytes. out_queue is the server's requests in
// flight. total_connections counts client connections accepted;
// curr_connections counts client and backend connections open now.
func (s *Server) StatsJSON() []byte {
	return twemproxyJSON(s.opts.Source.Stats(), s.opts.Hostname, s.opts.Version,
		s.opts.Source.Uptime(), time.Now())
}

func twemproxyJSON(stats []proxy.PoolStats, source, version string, uptime time.Duration, now time.Time) []byte {
	var total, curr int64
	for i := range stats {
		total += stats[i].ClientConnectionsTotal
		curr += stats[i].ClientConnections
		for j := range stats[i].Servers {
			curr += stats[i].Servers[j].Connections
		}
	}
	w := &jsonWriter{b: make([]byte, 0, 512+len(stats)*1024)}
	w.b = append(w.b, '{')
	w.str("service", "cacheproxy")
	w.str("source", source)
	w.str("version", version)
	w.num("uptime", int64(uptime/time.Second))
	w.num("timestamp", now.Unix())
	w.num("total_connections", total)
	w.num("curr_connections", curr)
	for i := range stats {
		ps := &stats[i]
		var ejects int64
		for j := range ps.Servers {
			ejects += ps.Servers[j].Ejections
		}
		w.open(ps.Name)
		w.num("client_eof", ps.ClientEOF)
		w.num("client_err", ps.ClientErrors)
		w.num("client_connections", ps.ClientConnections)
		w.num("server_ejects", ejects)
		w.num("forward_error", ps.ForwardErrors)
		w.num("fragments", ps.Fragments)
		for j := range ps.Servers {
			ss := &ps.Servers[j]
			w.open(ss.Name) // twemproxy keys a server by its ring name (host alone on port 11211)
			w.num("server_eof", ss.EOF)
			w.num("server_err", ss.ConnErrors)
			w.num("server_timedout", ss.Timeouts)
			w.num("server_connections", ss.Connections)
			var ejectedAt int64 // twemproxy: microseconds since the epoch, 0 if never
			if !ss.EjectedAt.IsZero() {
				ejectedAt = ss.EjectedAt.UnixMicro()
			}
			w.num("server_ejected_at", ejectedAt)
			w.num("requests", ss.Requests)
			w.num("request_bytes", ss.RequestBytes)
			w.num("responses", ss.Responses)
			w.num("response_bytes", ss.ResponseBytes)
			w.num("in_queue", 0)
			w.num("in_queue_bytes", 0)
			w.num("out_queue", ss.InFlight)
			w.num("out_queue_bytes", 0)
			if ss.Followed { // not in twemproxy: where a followed server is now
				w.str("addr", ss.Addr)
				w.num("failovers", ss.Failovers)
			}
			w.close()
		}
		w.close()
	}
	w.b = append(w.b, '}')
	return w.b
}

// jsonWriter appends a JSON object's members in order.
type jsonWriter struct {
	b     []byte
	comma bool // a member precedes at this level
}

func (w *jsonWriter) key(k string) {
	if w.comma {
		w.b = append(w.b, ", "...)
	}
	w.comma = true
	w.b = appendJSONString(w.b, k)
	w.b = append(w.b, ':')
}

func (w *jsonWriter) str(k, v string) {
	w.key(k)
	w.b = appendJSONString(w.b, v)
}

func (w *jsonWriter) num(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
}

func (w *jsonWriter) open(k string) {
	w.key(k)
	w.b = append(w.b, " {"...)
	w.comma = false
}

func (w *jsonWriter) close() {
	w.b = append(w.b, '}')
	w.comma = true
}

// appendJSONString appends s as a JSON string. Plain ASCII (every metric
// field name, most pool and server names) is appended as is.
func appendJSONString(b []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	if plain {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	q, err := json.Marshal(s)
	if err != nil { // a Go string always marshals
		panic(fmt.Sprintf("admin: marshal %q: %v", s, err))
	}
	return append(b, q...)
}

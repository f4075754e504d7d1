package soak

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/loadgen"
)

// multiGet checks multi-key gets (memcached "get k1 ... kn", Redis MGET)
// through a pool whose keys a loadgen run with the same KeyPrefix, Keys and
// ValueSize stored: every value that comes back must be the one loadgen
// wrote for that key ("key:<key>:" padded with 'x' to ValueSize, the
// format its package documentation gives). loadgen itself sends single-key
// requests only.
type multiGet struct {
	proto     loadgen.Protocol
	addr      string
	prefix    string
	keys      int // key ranks are 0..keys-1
	valueSize int
	width     int // keys per request
}

// mgStats counts what a multiGet run saw.
type mgStats struct {
	requests, keys, hits, misses int64
	errors                       int64 // error replies ("SERVER_ERROR ...", "-ERR ...")
	connFailures                 int64 // I/O errors and timeouts; the connection is redialled
	wrong                        int64 // a value for a key not asked, a wrong value, a malformed reply
	firstWrong, firstErr         string
}

func (m *multiGet) key(rank int) string { return m.prefix + strconv.Itoa(rank) }

// value is what loadgen stores under key.
func (m *multiGet) value(key string) []byte {
	v := []byte("key:" + key + ":")
	for len(v) < m.valueSize {
		v = append(v, 'x')
	}
	return v
}

// run sends multi-gets one at a time until end or ctx's end.
func (m *multiGet) run(ctx context.Context, end time.Time, seed uint64) mgStats {
	var st mgStats
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	keys := make([]string, m.width)
	for ctx.Err() == nil && time.Now().Before(end) {
		if conn == nil {
			c, err := net.DialTimeout("tcp", m.addr, 5*time.Second)
			if err != nil {
				st.connFailures++
				st.noteErr(err)
				time.Sleep(50 * time.Millisecond) // redial back-off, not synchronisation
				continue
			}
			conn, br = c, bufio.NewReader(c)
		}
		seen := map[int]bool{}
		for i := range keys {
			r := rng.IntN(m.keys)
			for seen[r] {
				r = rng.IntN(m.keys)
			}
			seen[r] = true
			keys[i] = m.key(r)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		var err error
		if m.proto == loadgen.Redis {
			err = m.mget(conn, br, keys, &st)
		} else {
			err = m.get(conn, br, keys, &st)
		}
		if err != nil {
			st.connFailures++
			st.noteErr(err)
			conn.Close()
			conn = nil
		}
	}
	return st
}

func (st *mgStats) noteErr(err error) {
	if st.firstErr == "" {
		st.firstErr = err.Error()
	}
}

// fault counts a wrong reply; the connection is then closed (the stream
// may be out of step).
func (st *mgStats) fault(format string, args ...any) error {
	st.wrong++
	err := fmt.Errorf(format, args...)
	if st.firstWrong == "" {
		st.firstWrong = err.Error()
	}
	return err
}

func line(br *bufio.Reader) ([]byte, error) {
	l, err := br.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if len(l) < 2 || l[len(l)-2] != '\r' {
		return nil, fmt.Errorf("line %q not ended by CRLF", l)
	}
	return l[:len(l)-2], nil
}

// get sends "get k1 ... kn" and checks the VALUEs up to END.
func (m *multiGet) get(conn net.Conn, br *bufio.Reader, keys []string, st *mgStats) error {
	req := []byte("get")
	for _, k := range keys {
		req = append(req, ' ')
		req = append(req, k...)
	}
	if _, err := conn.Write(append(req, "\r\n"...)); err != nil {
		return err
	}
	asked := map[string]bool{}
	for _, k := range keys {
		asked[k] = true
	}
	hits := 0
	for {
		l, err := line(br)
		if err != nil {
			return err
		}
		switch {
		case string(l) == "END":
			st.requests++
			st.keys += int64(len(keys))
			st.hits += int64(hits)
			st.misses += int64(len(keys) - hits)
			return nil
		case bytes.HasPrefix(l, []byte("SERVER_ERROR ")), bytes.HasPrefix(l, []byte("CLIENT_ERROR ")), string(l) == "ERROR":
			if hits > 0 {
				return st.fault("%q after %d VALUEs of %v", l, hits, keys)
			}
			st.requests++
			st.errors++
			if st.firstErr == "" {
				st.firstErr = string(l)
			}
			return nil
		case bytes.HasPrefix(l, []byte("VALUE ")):
		default:
			return st.fault("get %v: unexpected line %q", keys, l)
		}
		var key string
		var flags, n int
		if _, err := fmt.Sscanf(string(l), "VALUE %s %d %d", &key, &flags, &n); err != nil || n < 0 || n > 1<<20 {
			return st.fault("get %v: malformed %q", keys, l)
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(br, body); err != nil {
			return err
		}
		if !asked[key] {
			return st.fault("get %v: VALUE for %q, not asked or twice", keys, key)
		}
		asked[key] = false
		if want := append(m.value(key), '\r', '\n'); !bytes.Equal(body, want) {
			return st.fault("get %v: %s = %.60q; want %.60q", keys, key, body, want)
		}
		hits++
	}
}

// mget sends MGET k1 ... kn and checks the array: element i is key i's
// value or a null.
func (m *multiGet) mget(conn net.Conn, br *bufio.Reader, keys []string, st *mgStats) error {
	req := []byte("*" + strconv.Itoa(len(keys)+1) + "\r\n$4\r\nMGET\r\n")
	for _, k := range keys {
		req = append(req, "$"+strconv.Itoa(len(k))+"\r\n"+k+"\r\n"...)
	}
	if _, err := conn.Write(req); err != nil {
		return err
	}
	l, err := line(br)
	if err != nil {
		return err
	}
	if len(l) > 0 && l[0] == '-' {
		st.requests++
		st.errors++
		if st.firstErr == "" {
			st.firstErr = string(l)
		}
		return nil
	}
	if string(l) != "*"+strconv.Itoa(len(keys)) {
		return st.fault("MGET %v: %q; want an array of %d", keys, l, len(keys))
	}
	hits := 0
	for _, k := range keys {
		l, err := line(br)
		if err != nil {
			return err
		}
		if string(l) == "$-1" {
			continue
		}
		digits, ok := bytes.CutPrefix(l, []byte("$"))
		n, err := strconv.Atoi(string(digits))
		if !ok || err != nil || n < 0 || n > 1<<20 {
			return st.fault("MGET %v: element %q", keys, l)
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(br, body); err != nil {
			return err
		}
		if want := append(m.value(k), '\r', '\n'); !bytes.Equal(body, want) {
			return st.fault("MGET %v: %s = %.60q; want %.60q", keys, k, body, want)
		}
		hits++
	}
	st.requests++
	st.keys += int64(len(keys))
	st.hits += int64(hits)
	st.misses += int64(len(keys) - hits)
	return nil
}

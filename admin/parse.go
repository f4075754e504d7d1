package admin

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Bounds on what a backend may send the collector.
const (
	maxStatLines = 4096    // lines in a memcached stats reply
	maxInfoBytes = 1 << 20 // a Redis INFO bulk string
)

// errTooLong is returned for a reply beyond the bounds above.
var errTooLong = errors.New("reply too long")

// readLine returns the next line without its CRLF (or LF). A line longer
// than r's buffer is an error.
func readLine(r *bufio.Reader) ([]byte, error) {
	l, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("line: %w", errTooLong)
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	l = l[:len(l)-1]
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	return l, nil
}

// readMemcacheStats reads a memcached "stats" reply ("STAT name value" lines
// up to "END") and returns name -> value. An error line (ERROR,
// CLIENT_ERROR, SERVER_ERROR) is returned as an error.
func readMemcacheStats(r *bufio.Reader) (map[string]string, error) {
	out := make(map[string]string, 96)
	for range maxStatLines {
		l, err := readLine(r)
		if err != nil {
			return nil, fmt.Errorf("memcached stats: %w", err)
		}
		if string(l) == "END" {
			return out, nil
		}
		rest, ok := bytes.CutPrefix(l, []byte("STAT "))
		if !ok {
			return nil, fmt.Errorf("memcached stats: unexpected line %q", l)
		}
		name, value, _ := bytes.Cut(rest, []byte(" "))
		if len(name) == 0 {
			return nil, fmt.Errorf("memcached stats: unexpected line %q", l)
		}
		out[string(name)] = string(value)
	}
	return nil, fmt.Errorf("memcached stats: more than %d lines: %w", maxStatLines, errTooLong)
}

// readRESPSimple reads a RESP simple-string reply and returns an error for
// an error reply (or anything else).
func readRESPSimple(r *bufio.Reader) error {
	l, err := readLine(r)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if len(l) > 0 && l[0] == '+' {
		return nil
	}
	return fmt.Errorf("redis: %q", l)
}

// readRedisInfo reads the bulk-string reply to INFO and returns field ->
// value for its "field:value" lines (section headers and blank lines are
// skipped). The keyspace lines ("db0:keys=1,expires=0,avg_ttl=0") are kept
// as they are.
func readRedisInfo(r *bufio.Reader) (map[string]string, error) {
	l, err := readLine(r)
	if err != nil {
		return nil, fmt.Errorf("redis info: %w", err)
	}
	if len(l) == 0 || l[0] != '$' {
		return nil, fmt.Errorf("redis info: %q", l)
	}
	n, err := strconv.Atoi(string(l[1:]))
	if err != nil || n < 0 {
		return nil, fmt.Errorf("redis info: bad bulk length %q", l)
	}
	if n > maxInfoBytes {
		return nil, fmt.Errorf("redis info: %d bytes: %w", n, errTooLong)
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("redis info: %w", err)
	}
	if body[n] != '\r' || body[n+1] != '\n' {
		return nil, errors.New("redis info: bulk string not followed by CRLF")
	}
	return parseInfo(body[:n]), nil
}

// parseInfo parses INFO text.
func parseInfo(b []byte) map[string]string {
	out := make(map[string]string, 128)
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok {
			out[string(k)] = string(v)
		}
	}
	return out
}

// keyspaceKeys sums the keys= figures of INFO's keyspace lines (db0, db1,
// ...). An empty Redis has no keyspace line, and so 0 keys.
func keyspaceKeys(info map[string]string) float64 {
	var total float64
	for k, v := range info {
		if len(k) < 3 || k[:2] != "db" {
			continue
		}
		if _, err := strconv.Atoi(k[2:]); err != nil {
			continue
		}
		for len(v) > 0 {
			var kv string
			kv, v, _ = strings.Cut(v, ",")
			if n, ok := strings.CutPrefix(kv, "keys="); ok {
				if f, err := strconv.ParseFloat(n, 64); err == nil {
					total += f
				}
			}
		}
	}
	return total
}

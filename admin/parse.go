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

// maxStatLines bounds the lines of a memcached stats reply the collector
// reads. (A Redis INFO reply is bounded by respclient.MaxBulk.)
const maxStatLines = 4096

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

// parseInfo parses the text of an INFO reply into field -> value for its
// "field:value" lines (section headers and blank lines are skipped). The
// keyspace lines ("db0:keys=1,expires=0,avg_ttl=0") are kept as they are.
func parseInfo(b string) map[string]string {
	out := make(map[string]string, 128)
	for len(b) > 0 {
		var line string
		line, b, _ = strings.Cut(b, "\n")
		line = strings.TrimSuffix(line, "\r")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
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

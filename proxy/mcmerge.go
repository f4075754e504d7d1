package proxy

import "bytes"

// valueBlock frames the first "VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n"
// block of a memcached get reply body and returns its key and total length.
// ok is false if body does not start with a well-formed block.
func valueBlock(body []byte) (key []byte, n int, ok bool) {
	nl := bytes.IndexByte(body, '\n')
	if nl < 0 || !bytes.HasPrefix(body, []byte("VALUE ")) {
		return nil, 0, false
	}
	line := body[len("VALUE "):nl]
	line = bytes.TrimSuffix(line, []byte("\r"))
	// key
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return nil, 0, false
	}
	key, line = line[:sp], line[sp+1:]
	// flags
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return nil, 0, false
	}
	line = line[sp+1:]
	// bytes [cas]
	if sp = bytes.IndexByte(line, ' '); sp >= 0 {
		line = line[:sp]
	}
	size := 0
	if len(line) == 0 || len(line) > 10 {
		return nil, 0, false
	}
	for _, c := range line {
		if c < '0' || c > '9' {
			return nil, 0, false
		}
		size = size*10 + int(c-'0')
	}
	n = nl + 1 + size + 2
	if n > len(body) || body[n-2] != '\r' || body[n-1] != '\n' {
		return nil, 0, false
	}
	return key, n, true
}

package loadgen

import (
	"bytes"
	"strconv"
)

// valuePrefix starts every value the generator writes: "key:<key>:<pad>".
const valuePrefix = "key:"

// keyspace formats keys and values for one key prefix and value size.
type keyspace struct {
	prefix    []byte
	valueSize int
	pad       []byte // valueSize bytes of 'x'
}

func newKeyspace(prefix string, valueSize int) keyspace {
	return keyspace{prefix: []byte(prefix), valueSize: valueSize, pad: bytes.Repeat([]byte{'x'}, valueSize)}
}

// appendKey appends the key of rank k.
func (ks *keyspace) appendKey(dst []byte, k int) []byte {
	dst = append(dst, ks.prefix...)
	return strconv.AppendInt(dst, int64(k), 10)
}

// appendValue appends the value stored under key: "key:<key>:" padded with
// 'x' to the value size (longer when the key does not fit).
func (ks *keyspace) appendValue(dst []byte, key []byte) []byte {
	n := len(valuePrefix) + len(key) + 1
	dst = append(dst, valuePrefix...)
	dst = append(dst, key...)
	dst = append(dst, ':')
	if n < ks.valueSize {
		dst = append(dst, ks.pad[:ks.valueSize-n]...)
	}
	return dst
}

// valueLen returns the length of the value stored under a key of keyLen bytes.
func (ks *keyspace) valueLen(keyLen int) int {
	return max(ks.valueSize, len(valuePrefix)+keyLen+1)
}

// decodeValue returns the key rank a value encodes, or false when the value is
// not one this keyspace wrote (corrupt or foreign).
func (ks *keyspace) decodeValue(v []byte) (int, bool) {
	if !bytes.HasPrefix(v, []byte(valuePrefix)) {
		return 0, false
	}
	v = v[len(valuePrefix):]
	if !bytes.HasPrefix(v, ks.prefix) {
		return 0, false
	}
	v = v[len(ks.prefix):]
	end := bytes.IndexByte(v, ':')
	if end < 0 {
		return 0, false
	}
	k, ok := atoi(v[:end])
	if !ok {
		return 0, false
	}
	keyLen := len(ks.prefix) + end
	if len(v)-end-1+len(valuePrefix)+keyLen+1 != ks.valueLen(keyLen) {
		return 0, false
	}
	return k, true
}

// op is one request of a batch.
type op struct {
	get  bool
	rank int
}

// outcome classifies a reply against its request.
type outcome int

const (
	outOK outcome = iota
	outMiss
	outError
	outNotStored
	outMisordered // a reply that belongs to another request of the same batch
	outMisrouted  // a value for a key this connection did not ask for in this batch
	outCorrupt    // a value not in the generator's format, or with the wrong length
)

// classify checks reply rep to request batch[i]. With verify false the value
// is not decoded; only the reply's type is checked against the request's.
func (ks *keyspace) classify(batch []op, i int, rep Reply, p Protocol, verify bool, scratch []byte) outcome {
	req := batch[i]
	switch rep.Kind {
	case ErrorReply:
		return outError
	case NotStored:
		if req.get {
			return outMisordered
		}
		return outNotStored
	case Stored, Integer:
		if req.get {
			return outMisordered
		}
		return outOK
	case Miss:
		if !req.get {
			return outMisordered
		}
		return outMiss
	}
	// Hit.
	if !req.get {
		return outMisordered
	}
	if !verify {
		return outOK
	}
	k, ok := ks.decodeValue(rep.Value)
	if !ok {
		return outCorrupt
	}
	if p == Memcache {
		// The VALUE line names a key too; it must be the one the value encodes.
		scratch = ks.appendKey(scratch[:0], k)
		if !bytes.Equal(scratch, rep.Key) {
			return outCorrupt
		}
	}
	if k == req.rank {
		return outOK
	}
	for j, o := range batch {
		if j != i && o.get && o.rank == k {
			return outMisordered
		}
	}
	return outMisrouted
}

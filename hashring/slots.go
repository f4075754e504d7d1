package hashring

import (
	"errors"
	"fmt"
)

// SlotCount is the number of Redis Cluster hash slots.
const SlotCount = 16384

// SlotRange is a run of Redis Cluster hash slots, Start to End inclusive.
type SlotRange struct {
	Start, End int
}

// CRC16 returns the CRC-16/XMODEM of b, the CRC Redis Cluster hashes keys
// with (Redis's crc16.c): crc16Table, with the state kept to 16 bits (unlike
// twemproxy's crc16 hash).
func CRC16(b []byte) uint16 {
	var c uint16
	for _, x := range b {
		c = c<<8 ^ uint16(crc16Table[byte(c>>8)^x])
	}
	return c
}

// ClusterTag returns the part of key Redis Cluster hashes: the text between
// the first '{' and the first '}' after it when that text is not empty,
// else the whole key. Unlike Tag, the delimiters are fixed and "{}" (empty)
// hashes the whole key, whatever follows it.
func ClusterTag(key []byte) []byte {
	for i, c := range key {
		if c != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j == i+1 {
					return key
				}
				return key[i+1 : j]
			}
		}
		return key
	}
	return key
}

// KeySlot returns key's Redis Cluster hash slot (CLUSTER KEYSLOT).
func KeySlot(key []byte) int {
	return int(CRC16(ClusterTag(key)) & (SlotCount - 1))
}

// Slots is the "slots" distribution: Redis Cluster's. A key goes to the
// server that owns its hash slot (Options.Slots); a slot no server owns goes
// to server 0, which answers with the cluster's own error or redirect. It
// ignores the hash, the hash tag (Redis's rule, ClusterTag, always
// applies), weights and Live: a slot belongs to its owner, up or down.
type Slots struct {
	owner [SlotCount]int32
}

var _ Ring = (*Slots)(nil)

func newSlots(o Options) (*Slots, error) {
	if len(o.Servers) == 0 {
		return nil, errors.New("hashring: no servers")
	}
	s := &Slots{}
	for i := range s.owner {
		s.owner[i] = -1
	}
	if len(o.Slots) > len(o.Servers) {
		return nil, fmt.Errorf("hashring: slots for %d servers, %d servers", len(o.Slots), len(o.Servers))
	}
	for i, ranges := range o.Slots {
		srv := o.Servers[i]
		for _, r := range ranges {
			if r.Start < 0 || r.End >= SlotCount || r.Start > r.End {
				return nil, fmt.Errorf("hashring: server %d (%q): slot range %d-%d is not within 0-%d", i, srv.Name, r.Start, r.End, SlotCount-1)
			}
			for k := r.Start; k <= r.End; k++ {
				if j := s.owner[k]; j >= 0 {
					return nil, fmt.Errorf("hashring: slot %d belongs to servers %d (%q) and %d (%q)", k, j, o.Servers[j].Name, i, srv.Name)
				}
				s.owner[k] = int32(i)
			}
		}
	}
	for i, v := range s.owner {
		if v < 0 {
			s.owner[i] = 0
		}
	}
	return s, nil
}

// Pick returns the server owning key's slot.
func (s *Slots) Pick(key []byte) int { return int(s.owner[KeySlot(key)]) }

// Route explains a placement: Hash is the key's slot.
func (s *Slots) Route(key []byte) Route {
	k := KeySlot(key)
	return Route{Server: int(s.owner[k]), Hash: uint32(k)}
}

// Owner returns the server owning slot k (0 to SlotCount-1).
func (s *Slots) Owner(k int) int { return int(s.owner[k]) }

// WithOwner returns a copy of s in which server i owns slot k.
func (s *Slots) WithOwner(k, i int) *Slots {
	n := *s
	n.owner[k] = int32(i)
	return &n
}

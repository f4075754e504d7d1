package config

import (
	"cmp"
	"fmt"
	"math"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// File is the configuration file's path ("" for a Config built in code).
	File string
	// Line is the 1-based line the problem is on, or 0 if unknown.
	Line int
	// Pool is the pool's name, or "" for a proxy-wide problem.
	Pool string
	// Key is the key at fault, such as "listen" or "servers[2]", or "" for
	// the pool (or file) as a whole.
	Key string
	// Reason says what is wrong.
	Reason string
}

// String formats the problem as "file:line: pool "name": key: reason",
// leaving out the parts that are empty.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
	}
	if p.Pool != "" {
		fmt.Fprintf(&b, "pool %q: ", p.Pool)
	}
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Reason)
	return b.String()
}

// Warning is something in a configuration that works but deserves
// attention, such as a key that is accepted for compatibility and ignored.
type Warning Problem

// String formats the warning like Problem.String.
func (w Warning) String() string { return Problem(w).String() }

// Error is every problem found in a configuration. Load and Validate return
// it as an error; use errors.As to get the list.
type Error struct {
	Problems []Problem
}

// Error lists the problems, one a line.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// byLine orders lines ascending, with 0 (unknown) last.
func byLine(a, b int) int {
	if a == 0 {
		a = math.MaxInt
	}
	if b == 0 {
		b = math.MaxInt
	}
	return cmp.Compare(a, b)
}

// positions remembers where in the file each pool and key came from.
type positions struct {
	lines map[posKey]int
	// bad marks servers whose entry failed to parse, so Validate does not
	// report them a second time.
	bad map[posKey]bool
}

type posKey struct{ pool, key string }

func (p *positions) line(pool, key string) int {
	if p == nil {
		return 0
	}
	if l, ok := p.lines[posKey{pool, key}]; ok {
		return l
	}
	if i := strings.IndexByte(key, '.'); i >= 0 { // "limits.max_clients" -> "limits"
		if l, ok := p.lines[posKey{pool, key[:i]}]; ok {
			return l
		}
	}
	return p.lines[posKey{pool, ""}]
}

func (p *positions) isBad(pool, key string) bool {
	return p != nil && p.bad[posKey{pool, key}]
}

// anyBad reports whether any entry of pool failed to parse.
func (p *positions) anyBad(pool string) bool {
	if p == nil {
		return false
	}
	for k := range p.bad {
		if k.pool == pool {
			return true
		}
	}
	return false
}

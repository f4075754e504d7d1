package resp

import (
	"fmt"
	"strings"
)

// ACLCategories are Redis 7.0's ACL command categories, in the order
// ACL CAT lists them (a test compares them with a live redis-server). "all"
// is not among them: +@all and -@all name every command.
func ACLCategories() []string {
	return []string{"keyspace", "read", "write", "set", "sortedset", "list", "hash", "string", "bitmap",
		"hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow", "blocking", "dangerous",
		"connection", "transaction", "scripting"}
}

// ACL is a user's command permissions compiled from Redis ACL command
// rules: one bit per entry of the command table (Command.ID), so a check
// is a shift and a mask. An ACL is immutable once built; the zero ACL (and
// a nil *ACL) allows nothing but the commands flagged no_auth.
type ACL struct {
	bits []uint64
}

// NewACL compiles rules as Redis 7.0 applies them with ACL SETUSER, in
// order, starting from no commands:
//
//	allcommands, +@all    every command
//	nocommands, -@all     no command
//	+@<category>          the commands of a category (-@ removes them)
//	+<command>            a command with all its subcommands (- removes)
//	+<command>|<sub>      one subcommand (- removes)
//
// Names are case-insensitive. An unknown command or category is an error,
// as is Redis's first-argument form (+select|0) on a command that has no
// subcommands.
func NewACL(rules []string) (*ACL, error) {
	a := &ACL{bits: make([]uint64, (commands.count+63)/64)}
	for _, r := range rules {
		if err := a.apply(r); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *ACL) apply(rule string) error {
	r := strings.ToLower(rule)
	switch r {
	case "allcommands", "+@all":
		a.fill(true)
		return nil
	case "nocommands", "-@all":
		a.fill(false)
		return nil
	}
	if len(r) < 2 || r[0] != '+' && r[0] != '-' {
		return fmt.Errorf("%q: want +command, -command, +@category, -@category, allcommands or nocommands", rule)
	}
	allow, name := r[0] == '+', r[1:]
	if cat, ok := strings.CutPrefix(name, "@"); ok {
		if !validCategory(cat) {
			return fmt.Errorf("%q: unknown ACL category %q (ACL CAT lists them)", rule, cat)
		}
		for _, c := range commands.all {
			a.category(c, cat, allow)
		}
		return nil
	}
	if strings.Count(name, "|") > 1 {
		return fmt.Errorf("%q: unknown command or category name in ACL", rule)
	}
	if top, _, ok := strings.Cut(name, "|"); ok {
		parent := Lookup([]byte(top))
		if parent != nil && !parent.IsContainer() {
			return fmt.Errorf("%q: %s has no subcommands (first-argument rules are not supported)", rule, top)
		}
	}
	c := LookupFull([]byte(name))
	if c == nil {
		return fmt.Errorf("%q: unknown command or category name in ACL", rule)
	}
	a.command(c, allow)
	return nil
}

// category sets (or clears) c if it is in cat, then looks at each of its
// subcommands, as Redis's ACLSetSelectorCommandBitsForCategory does: a
// container in the category takes all its subcommands with it.
func (a *ACL) category(c *Command, cat string, allow bool) {
	if hasCategory(c.ACL, cat) {
		a.command(c, allow)
	}
	for _, s := range c.Sub {
		a.category(s, cat, allow)
	}
}

// command sets (or clears) c and every subcommand of c.
func (a *ACL) command(c *Command, allow bool) {
	a.set(c.ID, allow)
	for _, s := range c.Sub {
		a.set(s.ID, allow)
	}
}

func (a *ACL) set(id int, allow bool) {
	if allow {
		a.bits[id>>6] |= 1 << (id & 63)
	} else {
		a.bits[id>>6] &^= 1 << (id & 63)
	}
}

func (a *ACL) fill(allow bool) {
	var w uint64
	if allow {
		w = ^uint64(0)
	}
	for i := range a.bits {
		a.bits[i] = w
	}
}

// Allows reports whether the rules let a user run c (for a container
// command called with a subcommand, pass the subcommand's entry, as
// Resolve returns it). Commands flagged no_auth (AUTH, HELLO, QUIT, RESET)
// are always allowed, as in Redis. It does not allocate.
func (a *ACL) Allows(c *Command) bool {
	if c.Flags&FlagNoAuth != 0 {
		return true
	}
	if a == nil {
		return false
	}
	i := c.ID >> 6
	return i < len(a.bits) && a.bits[i]&(1<<(c.ID&63)) != 0
}

// ErrNoPerm appends Redis 7.0's reply to a command the user may not run:
// -NOPERM this user has no permissions to run the '<name>' command
// (name as the table has it, "config|get" for a subcommand).
func ErrNoPerm(dst []byte, c *Command) []byte {
	return ErrNoPermName(dst, c.Name)
}

// ErrNoPermName is ErrNoPerm for a command named name that is not in the
// table (the proxy's own CACHEPROXY).
func ErrNoPermName(dst []byte, name string) []byte {
	dst = append(dst, "-NOPERM this user has no permissions to run the '"...)
	dst = append(dst, name...)
	return append(dst, "' command\r\n"...)
}

func validCategory(cat string) bool {
	for _, c := range ACLCategories() {
		if c == cat {
			return true
		}
	}
	return false
}

// hasCategory reports whether the space-separated list acl ("@read @fast")
// names cat.
func hasCategory(acl, cat string) bool {
	for _, f := range strings.Fields(acl) {
		if f[1:] == cat {
			return true
		}
	}
	return false
}

package resp

import (
	"sort"
	"strings"
)

// Flags are a command's flags as redis-server's COMMAND reports them.
type Flags uint32

// Command flags, one per flag name in Redis 7's COMMAND output.
const (
	FlagWrite           Flags = 1 << iota // write: may modify the keyspace
	FlagReadonly                          // readonly: only reads keys
	FlagDenyOOM                           // denyoom: refused when out of memory
	FlagModule                            // module: implemented by a module
	FlagAdmin                             // admin: administrative command
	FlagPubSub                            // pubsub: publish/subscribe related
	FlagNoScript                          // noscript: not allowed in scripts
	FlagBlocking                          // blocking: may block the client
	FlagLoading                           // loading: allowed while loading the dataset
	FlagStale                             // stale: allowed on a stale replica
	FlagSkipMonitor                       // skip_monitor: not shown by MONITOR
	FlagSkipSlowlog                       // skip_slowlog: not logged in the slowlog
	FlagAsking                            // asking: cluster ASKING related
	FlagFast                              // fast: O(1) or O(log N)
	FlagNoAuth                            // no_auth: allowed before AUTH
	FlagMayReplicate                      // may_replicate: may be replicated
	FlagNoMandatoryKeys                   // no_mandatory_keys: keys are optional
	FlagNoAsyncLoading                    // no_async_loading: refused during async loading
	FlagNoMulti                           // no_multi: not allowed in MULTI
	FlagMovableKeys                       // movablekeys: key positions depend on the arguments
	FlagAllowBusy                         // allow_busy: allowed while a script is busy
)

// KeyFlags are a key spec's flags (RO, RW, OW, RM, access, update, ...).
type KeyFlags uint16

// Key spec flags, as COMMAND reports them.
const (
	KeyRO            KeyFlags = 1 << iota // RO: read only
	KeyRW                                 // RW: read-write
	KeyOW                                 // OW: overwrite
	KeyRM                                 // RM: deletes the key
	KeyAccess                             // access: returns user data
	KeyUpdate                             // update: updates data
	KeyInsert                             // insert: adds data
	KeyDelete                             // delete: removes data
	KeyNotKey                             // not_key: a name that is not a key (hashed like one)
	KeyIncomplete                         // incomplete: may not find every key
	KeyVariableFlags                      // variable_flags: flags depend on the arguments
)

// BeginSearch says how a key spec finds its first key.
type BeginSearch uint8

// Key spec begin_search types.
const (
	BeginUnknown BeginSearch = iota // the keys cannot be found from the spec
	BeginIndex                      // at a fixed argument index (Index)
	BeginKeyword                    // after a keyword (Keyword, searched from StartFrom)
)

// FindKeys says how a key spec finds its keys after the first.
type FindKeys uint8

// Key spec find_keys types.
const (
	FindUnknown FindKeys = iota // the keys cannot be found from the spec
	FindRange                   // LastKey (relative; negative counts from the end), KeyStep, Limit
	FindKeynum                  // a count at KeyNumIdx, keys from FirstKey every KeyStep
)

// KeySpec is one of a command's key specifications (Redis 7 key-specs).
// Indexes are relative to the full argument list, command name at 0 (for a
// subcommand, the container's name at 0 and the subcommand's at 1).
type KeySpec struct {
	Flags KeyFlags
	Begin BeginSearch
	// Index is the first key's index when Begin is BeginIndex.
	Index int
	// Keyword and StartFrom apply when Begin is BeginKeyword: the search
	// starts at StartFrom (negative: from the end, going backwards).
	Keyword   string
	StartFrom int
	Find      FindKeys
	// LastKey, KeyStep and Limit apply when Find is FindRange; KeyNumIdx,
	// FirstKey and KeyStep when Find is FindKeynum.
	LastKey, KeyStep, Limit int
	KeyNumIdx, FirstKey     int
}

// Command is one entry of the Redis command table: a top-level command or a
// subcommand of a container command (CLIENT, CONFIG, OBJECT, ...). Entries
// are read-only.
type Command struct {
	// Name is the lower-case name; a subcommand is "container|sub".
	Name string
	// Arity is Redis's arity: N means exactly N arguments counting the
	// name, -N means at least N.
	Arity int
	Flags Flags
	// FirstKey, LastKey and Step are the legacy key positions (LastKey
	// negative counts from the end; all 0 when there are no keys or the keys
	// move, see KeySpecs).
	FirstKey, LastKey, Step int
	// ACL is the space-separated list of ACL categories.
	ACL      string
	KeySpecs []KeySpec
	// Sub holds a container command's subcommands, sorted by Name.
	Sub []*Command

	// Class is the proxy's routing class (classes.go).
	Class Class
	// Merge says how fragment or fan-out replies combine, for ClassSplit and
	// ClassFanout.
	Merge Merge
	// Reason says why a ClassUnsupported command cannot work through the
	// proxy, in words fit for an error reply.
	Reason string
	// Replies are the reply types that can answer the command (replies.go);
	// zero when the proxy does not check.
	Replies ReplyTypes

	// Parent is the container of a subcommand, nil for top-level commands.
	Parent *Command
	// ID numbers the table's entries, top-level commands and subcommands,
	// densely from 0: an ACL keeps one bit per ID.
	ID int

	info string // the raw COMMAND INFO entry, RESP2
}

// table is the immutable command table. It is built once when the package is
// initialised, from the generated data and the classes, and never modified.
type table struct {
	all    []*Command          // top-level, sorted by name
	byName map[string]*Command // top-level, by lower-case name
	count  int                 // top-level and subcommands
}

var commands = newTable()

// extraCommands are commands newer than the generated table that clients send
// in their handshake and that the proxy answers itself.
func extraCommands() map[string]*Command {
	return map[string]*Command{
		"client": {Name: "client|setinfo", Arity: -4, Flags: FlagNoScript | FlagLoading | FlagStale, ACL: "@slow @connection",
			info: "*10\r\n$14\r\nclient|setinfo\r\n:-4\r\n*3\r\n+noscript\r\n+loading\r\n+stale\r\n:0\r\n:0\r\n:0\r\n*2\r\n+@slow\r\n+@connection\r\n*0\r\n*0\r\n*0\r\n"},
	}
}

func newTable() *table {
	t := &table{all: generated(), byName: map[string]*Command{}}
	for parent, c := range extraCommands() {
		for _, p := range t.all {
			if p.Name == parent {
				p.Sub = append(p.Sub, c)
				sort.Slice(p.Sub, func(i, j int) bool { return p.Sub[i].Name < p.Sub[j].Name })
			}
		}
	}
	for _, c := range t.all {
		t.byName[c.Name] = c
		c.ID = t.count
		t.count++
		c.Class, c.Merge, c.Reason = classify(c)
		c.Replies = replyTypes(c.Name)
		for _, s := range c.Sub {
			s.Parent = c
			s.ID = t.count
			s.Class, s.Merge, s.Reason = classify(s)
			s.Replies = replyTypes(s.Name)
			t.count++
		}
	}
	return t
}

// maxNameLen bounds the names Lookup lowers on the stack; no Redis command
// name is longer.
const maxNameLen = 32

// Lookup returns the top-level command named name (any case), or nil. It
// does not allocate.
func Lookup(name []byte) *Command {
	if len(name) > maxNameLen {
		return nil
	}
	var buf [maxNameLen]byte
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return commands.byName[string(buf[:len(name)])]
}

// Commands returns every top-level command sorted by name; subcommands are in
// each entry's Sub. The entries are shared and must not be modified.
func Commands() []*Command {
	out := make([]*Command, len(commands.all))
	copy(out, commands.all)
	return out
}

// IsContainer reports whether c has subcommands.
func (c *Command) IsContainer() bool { return len(c.Sub) > 0 }

// SubName returns the subcommand part of a subcommand's Name ("setname" for
// "client|setname"), or Name for a top-level command.
func (c *Command) SubName() string {
	if i := strings.LastIndexByte(c.Name, '|'); i >= 0 {
		return c.Name[i+1:]
	}
	return c.Name
}

// Resolve returns the entry that describes a request with these args
// (args[0] is the command name): the subcommand entry named by args[1] for a
// container command, c itself for a plain command or a container called
// without a subcommand, and nil for an unknown subcommand (answer it with
// ErrUnknownSubcommand). It does not allocate.
func (c *Command) Resolve(args [][]byte) *Command {
	if len(c.Sub) == 0 || len(args) < 2 {
		return c
	}
	sub := args[1]
	for _, s := range c.Sub {
		if n := s.Name[len(c.Name)+1:]; len(n) == len(sub) && equalFold(n, sub) {
			return s
		}
	}
	return nil
}

// CheckArity reports whether a request with nargs arguments (counting the
// command name, and for a subcommand the container name too) satisfies c's
// arity.
func (c *Command) CheckArity(nargs int) bool {
	if c.Arity >= 0 {
		return nargs == c.Arity
	}
	return nargs >= -c.Arity
}

// IsBlocking reports whether this request may block on the server: a command
// flagged blocking, except XREAD and XREADGROUP, which block only with BLOCK.
func (c *Command) IsBlocking(args [][]byte) bool {
	if c.Flags&FlagBlocking == 0 {
		return false
	}
	if c.Name != "xread" && c.Name != "xreadgroup" {
		return true
	}
	for i := 1; i < len(args); i++ {
		if equalFold("streams", args[i]) {
			return false
		}
		if equalFold("block", args[i]) {
			return true
		}
	}
	return false
}

// equalFold reports whether b equals the lower-case ASCII string s, ignoring
// b's case.
func equalFold(s string, b []byte) bool {
	if len(s) != len(b) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		d := s[i]
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

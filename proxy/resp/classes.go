package resp

// Class is how the proxy routes a command (see docs/commands.md and the Redis
// section of the protocols design note).
type Class uint8

// Routing classes.
const (
	// ClassUnassigned is the zero value; no command in the table has it (a
	// test checks).
	ClassUnassigned Class = iota
	// ClassSingle: hashed on its one key (for PUBLISH, the channel).
	ClassSingle
	// ClassSplit: several keys split per server and the replies merged as
	// Merge says (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH).
	ClassSplit
	// ClassSameServer: several keys that must all hash to one server, else
	// ErrCrossSlot. A request without keys (EVAL with numkeys 0) may go to
	// any server.
	ClassSameServer
	// ClassLocal: answered by the proxy itself (handshake, PING, COMMAND...).
	ClassLocal
	// ClassFanout: sent to every server, replies merged as Merge says.
	ClassFanout
	// ClassAny: no keys and the same answer from any server (help texts,
	// LOLWUT); sent to one server.
	ClassAny
	// ClassDedicated: needs a backend connection of its own for the rest of
	// the client's session or the transaction (MULTI/EXEC, WATCH, blocking
	// commands, SUBSCRIBE family). Blocking commands with several keys need
	// them on one server, as ClassSameServer.
	ClassDedicated
	// ClassRefused: administrative; refused with ErrNotAllowed unless the
	// configuration's allow-list opens it.
	ClassRefused
	// ClassUnsupported: cannot mean the same through a sharding proxy; Reason
	// says why.
	ClassUnsupported
	// ClassContainer: a container command (CLIENT, OBJECT, ...) called
	// without a subcommand: Resolve the subcommand first; a missing one is a
	// wrong-arity error, an unknown one ErrUnknownSubcommand.
	ClassContainer
)

var classNames = [...]string{"unassigned", "single", "split", "same-server", "local", "fan-out", "any",
	"dedicated", "refused", "unsupported", "container"}

// String returns the class name used in docs/commands.md.
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "class?"
}

// Merge is how the replies of a split or fanned-out request combine.
type Merge uint8

// Merge kinds.
const (
	MergeNone Merge = iota
	// MergeKeyOrder: each fragment answers an array for its keys; the client
	// gets one array in the order of the request's keys (MGET).
	MergeKeyOrder
	// MergeAllOK: +OK when every part answered +OK, else the first error
	// (MSET, SCRIPT FLUSH).
	MergeAllOK
	// MergeSum: integer replies summed (DEL, UNLINK, EXISTS, TOUCH, DBSIZE).
	MergeSum
	// MergeConcat: array replies concatenated (KEYS).
	MergeConcat
	// MergeSame: every server should answer the same; the first reply is
	// passed on, or the first error (SCRIPT LOAD, FUNCTION LOAD).
	MergeSame
	// MergeAllArray: arrays of 0/1 integers combined element-wise with AND
	// (SCRIPT EXISTS: a script exists only if every server has it).
	MergeAllArray
	// MergeScan: one server at a time, the server index carried in the
	// cursor (SCAN).
	MergeScan
	// MergeAnyNonNull: the first non-null reply (RANDOMKEY).
	MergeAnyNonNull
)

var mergeNames = [...]string{"", "key order", "all OK", "sum", "concatenate", "same on all", "AND of arrays",
	"server by server", "first non-null"}

// String describes the merge for docs/commands.md.
func (m Merge) String() string {
	if int(m) < len(mergeNames) {
		return mergeNames[m]
	}
	return "merge?"
}

// classify assigns c its routing class. Explicit lists come first; a command
// not listed whose key specs name exactly one key at a fixed position is
// single-key. Anything else stays ClassUnassigned, which a test rejects, so a
// new multi-key or keyless command needs a decision here.
func classify(c *Command) (Class, Merge, string) {
	switch c.Name {
	// Split and merged.
	case "mget":
		return ClassSplit, MergeKeyOrder, ""
	case "mset":
		return ClassSplit, MergeAllOK, ""
	case "del", "unlink", "exists", "touch":
		return ClassSplit, MergeSum, ""

	// Several keys that must share a server.
	case "sinter", "sinterstore", "sunion", "sunionstore", "sdiff", "sdiffstore", "sintercard", "smove",
		"rpoplpush", "lmove", "lmpop", "rename", "renamenx", "copy", "lcs",
		"zunion", "zunionstore", "zinter", "zinterstore", "zdiff", "zdiffstore", "zintercard", "zrangestore", "zmpop",
		"pfmerge", "pfcount", "bitop", "msetnx",
		"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro",
		"sort", "sort_ro", "georadius", "georadiusbymember", "geosearchstore":
		return ClassSameServer, MergeNone, ""

	// Answered by the proxy.
	case "hello", "auth", "select", "ping", "echo", "quit", "reset", "time", "info", "acl|whoami",
		"command", "command|count", "command|docs", "command|getkeys", "command|getkeysandflags",
		"command|help", "command|info", "command|list",
		"client|setname", "client|getname", "client|setinfo", "client|id", "client|info", "client|help":
		return ClassLocal, MergeNone, ""

	// Every server.
	case "dbsize":
		return ClassFanout, MergeSum, ""
	case "keys":
		return ClassFanout, MergeConcat, ""
	case "scan":
		return ClassFanout, MergeScan, ""
	case "randomkey":
		return ClassFanout, MergeAnyNonNull, ""
	case "script|load", "function|load", "function|restore", "function|delete":
		return ClassFanout, MergeSame, ""
	case "script|flush", "function|flush":
		return ClassFanout, MergeAllOK, ""
	case "script|exists":
		return ClassFanout, MergeAllArray, ""

	// One server, any.
	case "lolwut", "function|list", "function|dump",
		"object|help", "memory|help", "xinfo|help", "xgroup|help", "script|help", "function|help", "pubsub|help":
		return ClassAny, MergeNone, ""

	// A connection of their own.
	case "multi", "exec", "discard", "watch", "unwatch",
		"blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop", "xread", "xreadgroup",
		"subscribe", "unsubscribe", "psubscribe", "punsubscribe", "ssubscribe", "sunsubscribe":
		return ClassDedicated, MergeNone, ""

	// Single-key by decision, not by key spec.
	case "publish":
		return ClassSingle, MergeNone, ""

	// Refused by default.
	case "flushall", "flushdb", "config", "shutdown", "debug", "monitor", "sync", "psync", "replicaof", "slaveof",
		"migrate", "save", "bgsave", "bgrewriteaof", "acl", "module", "failover", "cluster", "replconf", "swapdb",
		"latency", "slowlog", "pfselftest", "memory|doctor", "memory|malloc-stats", "memory|purge", "memory|stats",
		"client|kill", "client|list", "client|pause", "client|unpause", "client|no-evict":
		return ClassRefused, MergeNone, ""

	// Cannot work through a sharding proxy.
	case "client|reply":
		return ClassUnsupported, MergeNone, "reply suppression would break the proxy's reply matching"
	case "client|tracking", "client|caching", "client|getredir", "client|trackinginfo":
		// Refused with ErrTracking's words.
		return ClassUnsupported, MergeNone, "not supported by the proxy yet (its near cache will own server-assisted caching); disable client-side caching (rueidis: DisableCache: true)"
	case "client|unblock":
		return ClassUnsupported, MergeNone, "client ids are the proxy's, not the servers'"
	case "wait":
		return ClassUnsupported, MergeNone, "replica acknowledgements are per server and per connection"
	case "lastsave", "role":
		return ClassUnsupported, MergeNone, "the answer differs from server to server"
	case "readonly", "readwrite", "asking", "restore-asking":
		return ClassUnsupported, MergeNone, "Redis Cluster commands; the proxy is not a cluster node"
	case "script|kill", "script|debug", "function|kill", "function|stats":
		return ClassUnsupported, MergeNone, "acts on one server's running script; the proxy cannot tell which"
	case "pubsub|channels", "pubsub|numpat", "pubsub|numsub", "pubsub|shardchannels", "pubsub|shardnumsub":
		return ClassUnsupported, MergeNone, "subscriptions are spread over the servers"
	case "spublish":
		return ClassSingle, MergeNone, ""
	}
	if c.IsContainer() {
		switch c.Name {
		case "config", "acl", "module", "cluster", "latency", "slowlog":
			return ClassRefused, MergeNone, ""
		}
		return ClassContainer, MergeNone, ""
	}
	if c.Parent != nil {
		switch c.Parent.Name {
		case "acl", "config", "module", "cluster", "latency", "slowlog":
			return ClassRefused, MergeNone, ""
		}
	}
	if c.singleKey() {
		return ClassSingle, MergeNone, ""
	}
	return ClassUnassigned, MergeNone, ""
}

// singleKey reports whether c's key specs name exactly one key at a fixed
// position and the legacy triple agrees.
func (c *Command) singleKey() bool {
	if c.Flags&FlagMovableKeys != 0 || len(c.KeySpecs) != 1 {
		return false
	}
	s := c.KeySpecs[0]
	return s.Begin == BeginIndex && s.Find == FindRange && s.LastKey == 0 &&
		c.FirstKey == s.Index && c.LastKey == s.Index
}

package memcache

// Command identifies a request kind.
type Command uint8

// The commands the parser recognises. CmdNone is the zero value and never
// returned by a successful Parse.
const (
	CmdNone       Command = iota
	CmdGet                // get <key>*
	CmdGets               // gets <key>*
	CmdGat                // gat <exptime> <key>*
	CmdGats               // gats <exptime> <key>*
	CmdSet                // set <key> <flags> <exptime> <bytes> [noreply]
	CmdAdd                // add ...
	CmdReplace            // replace ...
	CmdAppend             // append ...
	CmdPrepend            // prepend ...
	CmdCas                // cas <key> <flags> <exptime> <bytes> <cas> [noreply]
	CmdDelete             // delete <key> [0] [noreply]
	CmdIncr               // incr <key> <delta> [noreply]
	CmdDecr               // decr <key> <delta> [noreply]
	CmdTouch              // touch <key> <exptime> [noreply]
	CmdFlushAll           // flush_all [delay] [noreply]
	CmdVersion            // version
	CmdVerbosity          // verbosity <level> [noreply]
	CmdStats              // stats [args]
	CmdQuit               // quit
	CmdConfigGet          // config get cluster (ElastiCache auto discovery)
	CmdMetaGet            // mg <key> <flags>*
	CmdMetaSet            // ms <key> <datalen> <flags>*
	CmdMetaDelete         // md <key> <flags>*
	CmdMetaArith          // ma <key> <flags>*
	CmdMetaNoop           // mn
	CmdMetaDebug          // me <key> [b]
	numCommands
)

// commandNames holds the wire name of each command; it is a constant-like
// array, never written.
var commandNames = [numCommands]string{
	CmdNone: "none", CmdGet: "get", CmdGets: "gets", CmdGat: "gat", CmdGats: "gats",
	CmdSet: "set", CmdAdd: "add", CmdReplace: "replace", CmdAppend: "append",
	CmdPrepend: "prepend", CmdCas: "cas", CmdDelete: "delete", CmdIncr: "incr",
	CmdDecr: "decr", CmdTouch: "touch", CmdFlushAll: "flush_all", CmdVersion: "version",
	CmdVerbosity: "verbosity", CmdStats: "stats", CmdQuit: "quit", CmdConfigGet: "config",
	CmdMetaGet: "mg", CmdMetaSet: "ms", CmdMetaDelete: "md", CmdMetaArith: "ma",
	CmdMetaNoop: "mn", CmdMetaDebug: "me",
}

// String returns the command's name as written on the wire ("get", "mg",
// "flush_all"; "config" for CmdConfigGet).
func (c Command) String() string {
	if c < numCommands {
		return commandNames[c]
	}
	return "unknown"
}

// Class says how the proxy routes a command.
type Class uint8

// Routing classes.
const (
	// ClassKey commands carry one key and go to the server that key hashes to.
	ClassKey Class = iota
	// ClassMultiKey commands (get, gets, gat, gats) are split per server and
	// their replies merged under one END.
	ClassMultiKey
	// ClassAll commands (flush_all) go to every server; OK when all said OK.
	ClassAll
	// ClassLocal commands (version, verbosity, stats, quit, mn, config get)
	// are answered by the proxy itself.
	ClassLocal
)

// String names the class.
func (c Class) String() string {
	switch c {
	case ClassKey:
		return "key"
	case ClassMultiKey:
		return "multikey"
	case ClassAll:
		return "all"
	case ClassLocal:
		return "local"
	}
	return "unknown"
}

// Class reports how the proxy routes c.
func (c Command) Class() Class {
	switch c {
	case CmdGet, CmdGets, CmdGat, CmdGats:
		return ClassMultiKey
	case CmdFlushAll:
		return ClassAll
	case CmdVersion, CmdVerbosity, CmdStats, CmdQuit, CmdConfigGet, CmdMetaNoop:
		return ClassLocal
	}
	return ClassKey
}

// IsStorage reports whether c is followed by a data block (set, add, replace,
// append, prepend, cas, ms).
func (c Command) IsStorage() bool {
	switch c {
	case CmdSet, CmdAdd, CmdReplace, CmdAppend, CmdPrepend, CmdCas, CmdMetaSet:
		return true
	}
	return false
}

// IsMeta reports whether c is a meta command (mg, ms, md, ma, mn, me).
func (c Command) IsMeta() bool { return c >= CmdMetaGet && c <= CmdMetaDebug }

// lookupCommand maps a command name to its Command. refused reports a
// command memcached has but the proxy does not forward.
func lookupCommand(name []byte) (cmd Command, refused bool) {
	switch string(name) { // no allocation: the compiler optimises this switch
	case "get":
		return CmdGet, false
	case "gets":
		return CmdGets, false
	case "gat":
		return CmdGat, false
	case "gats":
		return CmdGats, false
	case "set":
		return CmdSet, false
	case "add":
		return CmdAdd, false
	case "replace":
		return CmdReplace, false
	case "append":
		return CmdAppend, false
	case "prepend":
		return CmdPrepend, false
	case "cas":
		return CmdCas, false
	case "delete":
		return CmdDelete, false
	case "incr":
		return CmdIncr, false
	case "decr":
		return CmdDecr, false
	case "touch":
		return CmdTouch, false
	case "flush_all":
		return CmdFlushAll, false
	case "version":
		return CmdVersion, false
	case "verbosity":
		return CmdVerbosity, false
	case "stats":
		return CmdStats, false
	case "quit":
		return CmdQuit, false
	case "config":
		return CmdConfigGet, false
	case "mg":
		return CmdMetaGet, false
	case "ms":
		return CmdMetaSet, false
	case "md":
		return CmdMetaDelete, false
	case "ma":
		return CmdMetaArith, false
	case "mn":
		return CmdMetaNoop, false
	case "me":
		return CmdMetaDebug, false
	case "shutdown", "slabs", "lru_crawler", "lru", "watch", "cache_memlimit",
		"extstore", "misbehave", "debugtime", "debugitem", "mcp", "bget":
		return CmdNone, true
	}
	return CmdNone, false
}

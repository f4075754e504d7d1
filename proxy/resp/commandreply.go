package resp

import "bytes"

// LookupFull returns the entry for a full command name, top-level ("get") or
// subcommand ("client|setname"), in any case, or nil.
func LookupFull(name []byte) *Command {
	i := bytes.IndexByte(name, '|')
	if i < 0 {
		return Lookup(name)
	}
	c := Lookup(name[:i])
	if c == nil || len(c.Sub) == 0 {
		return nil
	}
	for _, s := range c.Sub {
		if equalFold(s.Name, name) {
			return s
		}
	}
	return nil
}

// Count returns the number of top-level commands, the COMMAND COUNT answer.
func Count() int { return len(commands.all) }

// AppendCommandCount appends the reply to COMMAND COUNT.
func AppendCommandCount(dst []byte) []byte { return AppendInt(dst, int64(Count())) }

// AppendCommandAll appends the reply to COMMAND: every top-level command's
// entry in Redis 7's shape (name, arity, flags, first key, last key, step,
// ACL categories, tips, key specs, subcommands).
func AppendCommandAll(dst []byte) []byte {
	dst = AppendArrayHeader(dst, len(commands.all))
	for _, c := range commands.all {
		dst = append(dst, c.info...)
	}
	return dst
}

// AppendInfo appends c's COMMAND INFO entry.
func (c *Command) AppendInfo(dst []byte) []byte { return append(dst, c.info...) }

// AppendCommandInfo appends the reply to COMMAND INFO names...: one entry per
// name, a null for an unknown one; every command when names is empty.
func AppendCommandInfo(dst []byte, names [][]byte) []byte {
	if len(names) == 0 {
		return AppendCommandAll(dst)
	}
	dst = AppendArrayHeader(dst, len(names))
	for _, n := range names {
		if c := LookupFull(n); c != nil {
			dst = append(dst, c.info...)
		} else {
			dst = AppendNullBulk(dst)
		}
	}
	return dst
}

// AppendCommandDocs appends the reply to COMMAND DOCS names... in RESP2 map
// form: each known name followed by an empty documentation array (unknown
// names are left out, as Redis does); every top-level command when names is
// empty.
func AppendCommandDocs(dst []byte, names [][]byte) []byte {
	var known int
	if len(names) == 0 {
		dst = AppendArrayHeader(dst, 2*len(commands.all))
		for _, c := range commands.all {
			dst = AppendBulkString(dst, c.Name)
			dst = AppendArrayHeader(dst, 0)
		}
		return dst
	}
	for _, n := range names {
		if LookupFull(n) != nil {
			known++
		}
	}
	dst = AppendArrayHeader(dst, 2*known)
	for _, n := range names {
		if c := LookupFull(n); c != nil {
			dst = AppendBulkString(dst, c.Name)
			dst = AppendArrayHeader(dst, 0)
		}
	}
	return dst
}

// AppendCommandList appends the reply to COMMAND LIST (without FILTERBY):
// every command and subcommand name.
func AppendCommandList(dst []byte) []byte {
	dst = AppendArrayHeader(dst, commands.count)
	for _, c := range commands.all {
		dst = AppendBulkString(dst, c.Name)
		for _, s := range c.Sub {
			dst = AppendBulkString(dst, s.Name)
		}
	}
	return dst
}

// AppendCommandGetKeys appends the reply to COMMAND GETKEYS args... (args is
// the command to examine, name first) in Redis 7's words, from KeyIndexes.
func AppendCommandGetKeys(dst []byte, args [][]byte) []byte {
	if len(args) < 2 { // COMMAND GETKEYS's own arity is -4
		return ErrWrongArity(dst, "command|getkeys")
	}
	c := Lookup(args[0])
	if c != nil {
		c = c.Resolve(args)
	}
	if c == nil {
		return AppendError(dst, "ERR Invalid command specified")
	}
	if !c.hasKeys() {
		return AppendError(dst, "ERR The command has no key arguments")
	}
	if !c.CheckArity(len(args)) {
		return AppendError(dst, "ERR Invalid number of arguments specified for command")
	}
	var buf [16]int
	keys := c.KeyIndexes(args, buf[:0])
	if c.Name == "publish" {
		keys = keys[:0] // a channel, not a key, as far as Redis is concerned
	}
	if len(keys) == 0 {
		if c.Flags&FlagNoMandatoryKeys != 0 {
			return AppendArrayHeader(dst, 0)
		}
		return AppendError(dst, "ERR Invalid arguments specified for command")
	}
	dst = AppendArrayHeader(dst, len(keys))
	for _, k := range keys {
		dst = AppendBulk(dst, args[k])
	}
	return dst
}

// hasKeys is Redis's doesCommandHaveKeys: movable keys, or a key spec not
// marked not_key.
func (c *Command) hasKeys() bool {
	if c.Flags&FlagMovableKeys != 0 {
		return true
	}
	for i := range c.KeySpecs {
		if c.KeySpecs[i].Flags&KeyNotKey == 0 {
			return true
		}
	}
	return false
}

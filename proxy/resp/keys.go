package resp

// KeyIndexes appends to dst the index into args of every key of this request
// (args[0] is the command name; for a subcommand entry args[1] is the
// subcommand) and returns dst. It follows Redis 7's COMMAND GETKEYS: the key
// specs first, with Redis's own argument scanning for the commands whose
// specs cannot find every key (SORT ... STORE, MIGRATE ... KEYS). Malformed
// arguments (a bad numkeys, a missing STREAMS) give the keys that can be
// found, possibly none; the backend reports the syntax error. PUBLISH's
// channel counts as its key, so publishers and subscribers meet on the
// channel's server. It does not allocate when dst has room.
func (c *Command) KeyIndexes(args [][]byte, dst []int) []int {
	switch c.Name {
	case "sort":
		return sortKeys(args, dst, true)
	case "sort_ro":
		return sortKeys(args, dst, false)
	case "migrate":
		return migrateKeys(args, dst)
	case "publish":
		if len(args) > 1 {
			dst = append(dst, 1)
		}
		return dst
	}
	if len(c.KeySpecs) == 0 {
		return c.legacyKeys(args, dst)
	}
	for i := range c.KeySpecs {
		dst = c.KeySpecs[i].appendKeys(args, dst)
	}
	return dst
}

// legacyKeys uses the first/last/step triple.
func (c *Command) legacyKeys(args [][]byte, dst []int) []int {
	if c.FirstKey <= 0 || c.Step <= 0 {
		return dst
	}
	last := c.LastKey
	if last < 0 {
		last += len(args)
	}
	for i := c.FirstKey; i <= last && i < len(args); i += c.Step {
		dst = append(dst, i)
	}
	return dst
}

// appendKeys evaluates one key spec as Redis's getKeysUsingKeySpecs does;
// a spec that does not apply to these arguments adds nothing.
func (s *KeySpec) appendKeys(args [][]byte, dst []int) []int {
	argc := len(args)
	first := 0
	switch s.Begin {
	case BeginIndex:
		first = s.Index
	case BeginKeyword:
		if s.StartFrom > 0 {
			for i := s.StartFrom; i < argc; i++ {
				if equalFold(s.Keyword, args[i]) {
					first = i + 1
					break
				}
			}
		} else {
			for i := argc + s.StartFrom; i >= 1 && i < argc; i-- {
				if equalFold(s.Keyword, args[i]) {
					first = i + 1
					break
				}
			}
		}
		if first == 0 {
			return dst
		}
	default:
		return dst
	}
	var last, step int
	switch s.Find {
	case FindRange:
		step = s.KeyStep
		switch {
		case s.LastKey >= 0:
			last = first + s.LastKey
		case s.Limit == 0:
			last = argc + s.LastKey
		default:
			last = first + ((argc-first)/s.Limit + s.LastKey)
		}
	case FindKeynum:
		step = s.KeyStep
		if s.KeyNumIdx >= argc-first {
			return dst
		}
		n, ok := parseInt(args[first+s.KeyNumIdx])
		if !ok || n < 0 || n > int64(argc) {
			return dst
		}
		first += s.FirstKey
		last = first + int(n) - 1
	default:
		return dst
	}
	if last >= argc || last < first || first >= argc || step <= 0 {
		return dst
	}
	for i := first; i <= last; i += step {
		dst = append(dst, i)
	}
	return dst
}

// sortKeys is Redis's sortGetKeys: the key at 1 and, for SORT, the argument
// after the last STORE (LIMIT takes two arguments, GET and BY one).
func sortKeys(args [][]byte, dst []int, store bool) []int {
	if len(args) < 2 {
		return dst
	}
	dst = append(dst, 1)
	if !store {
		return dst
	}
	storeAt := 0
	for i := 2; i < len(args); i++ {
		switch {
		case equalFold("limit", args[i]):
			i += 2
		case equalFold("get", args[i]), equalFold("by", args[i]):
			i++
		case equalFold("store", args[i]) && i+1 < len(args):
			storeAt = i + 1
		}
	}
	if storeAt > 0 {
		dst = append(dst, storeAt)
	}
	return dst
}

// migrateKeys is Redis's migrateGetKeys: the key at 3, or with KEYS every
// argument after it (AUTH takes one argument, AUTH2 two).
func migrateKeys(args [][]byte, dst []int) []int {
	if len(args) < 4 {
		return dst
	}
	first, num := 3, 1
	if len(args) > 6 {
		for i := 6; i < len(args); i++ {
			if equalFold("keys", args[i]) {
				first, num = i+1, len(args)-i-1
				break
			}
			switch {
			case equalFold("auth", args[i]):
				i++
			case equalFold("auth2", args[i]):
				i += 2
			}
		}
	}
	for i := first; i < first+num; i++ {
		dst = append(dst, i)
	}
	return dst
}

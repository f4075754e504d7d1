package resp

// ReplyTypes is the set of reply types (RESP2, and their RESP3 forms) that can answer a command, for
// the proxy to check each backend reply against the request it is matched
// with. An error reply answers any command. The zero value means the proxy
// does not know, and takes any reply.
type ReplyTypes uint8

// Reply type bits.
const (
	ReplySimple ReplyTypes = 1 << iota // '+'
	ReplyInt                           // ':'
	ReplyBulk                          // '$', a null bulk too
	ReplyArray                         // '*', a null array too
)

// Allows reports whether a reply whose type byte is t can answer.
func (rt ReplyTypes) Allows(t byte) bool {
	if rt == 0 || t == '-' {
		return true
	}
	switch t {
	case '+':
		return rt&ReplySimple != 0
	case ':':
		return rt&ReplyInt != 0
	case '$':
		return rt&ReplyBulk != 0
	case '*':
		return rt&ReplyArray != 0
	// RESP3 (a connection that did HELLO 3): the same replies, typed.
	case '_': // a null bulk or a null array
		return rt&(ReplyBulk|ReplyArray) != 0
	case ',', '=': // a double (ZSCORE, ZINCRBY), verbatim text
		return rt&ReplyBulk != 0
	case '%', '~': // a map (HGETALL), a set (SMEMBERS)
		return rt&ReplyArray != 0
	case '#', '(': // a boolean, a big number
		return rt&ReplyInt != 0
	case '|', '!': // an attribute before the reply; a blob error
		return true
	}
	return false
}

// replyTypes lists what the common data commands answer in RESP2, whatever
// their options (Redis 7.0; the types have not changed since 2.x for most).
// Commands not listed are not checked.
func replyTypes(name string) ReplyTypes {
	switch name {
	case "incr", "decr", "incrby", "decrby", "append", "strlen", "setrange", "getbit", "setbit",
		"bitcount", "bitpos", "setnx", "msetnx",
		"hset", "hsetnx", "hdel", "hlen", "hexists", "hstrlen", "hincrby",
		"llen", "lpush", "rpush", "lpushx", "rpushx", "linsert", "lrem",
		"sadd", "srem", "scard", "sismember", "smove", "sintercard",
		"sinterstore", "sunionstore", "sdiffstore",
		"zcard", "zcount", "zlexcount", "zrem", "zremrangebyrank", "zremrangebyscore", "zremrangebylex",
		"zintercard", "zunionstore", "zinterstore", "zdiffstore", "zrangestore",
		"expire", "pexpire", "expireat", "pexpireat", "persist", "ttl", "pttl", "expiretime", "pexpiretime",
		"del", "unlink", "exists", "touch", "renamenx", "copy",
		"pfadd", "pfcount", "publish", "spublish",
		"object|freq", "object|idletime", "object|refcount":
		return ReplyInt
	case "get", "getdel", "getex", "getset", "getrange", "substr", "hget", "lindex",
		"incrbyfloat", "hincrbyfloat", "zscore", "zincrby", "dump", "object|encoding":
		return ReplyBulk
	case "zrank", "zrevrank", "zadd":
		return ReplyInt | ReplyBulk // ZADD INCR answers the score
	case "lpop", "rpop":
		return ReplyBulk | ReplyArray // with a count: an array
	case "set":
		return ReplySimple | ReplyBulk // GET, or NX/XX not met: a bulk
	case "mset", "setex", "psetex", "lset", "ltrim", "rename", "hmset", "pfmerge", "type", "restore":
		return ReplySimple
	case "mget", "hgetall", "hkeys", "hvals", "hmget", "lrange", "smembers", "sinter", "sunion", "sdiff",
		"smismember", "zrange", "zrangebyscore", "zrevrange", "zrevrangebyscore", "zrangebylex",
		"zrevrangebylex", "zmscore", "zpopmin", "zpopmax", "keys", "scan", "hscan", "sscan", "zscan":
		return ReplyArray
	}
	return 0
}

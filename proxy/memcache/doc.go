// Package memcache is cacheproxy's codec for the memcached text and meta
// protocols. It works on []byte only and knows nothing of networking, so the
// data path, the fuzz targets and the load generator all share it.
//
// The request side is an incremental parser: [Parser.Parse] frames the first
// request in a buffer as slices into that buffer, reports an incomplete frame
// with n == 0 (and, once a storage command's header has been read, the total
// size the buffer must reach, so a large value is not re-parsed on every
// read), and reports bad input as an [*Error] carrying the reply memcached
// would give and how many bytes to discard. Requests are rewritten for the
// backend by [Request.AppendForward] (noreply and the meta q flag removed, so
// every forwarded request gets exactly one reply, keeping FIFO matching) and
// [Request.AppendMultiGet] (one server's share of a multi-key get).
//
// The reply side frames what a backend sends: [ParseReply] reports the length
// of the first complete reply for a given command, its [Status], and for the
// get family the number of VALUE blocks and where the closing END starts, so
// fragments can be merged under one END. [Suppress] says which replies the
// client asked not to see.
//
// Encoders (AppendError, AppendEnd, AppendStat, ...) build the replies the
// proxy gives itself; every client-visible error goes through [AppendError].
//
// The request flow through the codec:
//
//	client bytes ──Parse──▶ Request ──Class()──▶ route
//	                                   │
//	       AppendForward / AppendMultiGet ──▶ backend
//	                                   │
//	backend bytes ──ParseReply──▶ Reply ──Suppress?──▶ drop, or
//	                                   └─ copy buf[:Body] (+ one END) ──▶ client
//
// Behaviour follows memcached 1.6's doc/protocol.txt and, where that is
// silent, what memcached 1.6.18 actually answers; the differences are listed
// on [Parser.Parse].
package memcache

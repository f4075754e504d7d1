package proxy

// codec is what the data path needs from a protocol. The data path (clients,
// backends, FIFOs, flushing, timeouts) never branches on protocol beyond
// calling these.
type codec interface {
	// initClient prepares a new client's parser state.
	initClient(cl *client)
	// serve parses and dispatches the complete requests at the start of buf
	// and returns how many bytes it consumed (more than len(buf) when the
	// rest of a bad request, still to arrive, must be skipped).
	serve(cl *client, buf []byte) int
	// reply frames the first complete reply for r in buf and, when there is
	// one, delivers it; n is 0 when the reply is incomplete. An error means
	// the backend's stream can't be trusted any more.
	reply(b *backend, buf []byte, r *request) (n int, err error)
	// cursor returns an incremental framer for r's reply (a big one, see
	// stream.go) and whether the reply may be written through to the
	// client as it arrives (false when it may be swallowed or rewritten).
	cursor(r *request) (cur replyCursor, through bool)
	// merge builds a split or fanned-out request's reply once its last
	// fragment is done; p's client is still there.
	merge(p *request)
	// errorReply appends a client-visible server error.
	errorReply(dst []byte, msg string) []byte
	// tooManyClients is what a client over a client limit is told before
	// it is closed: the words the protocol's own server uses.
	tooManyClients() []byte
	// probeRequest is the no-op a probe sends and the prefix of a good reply.
	probeRequest() (req []byte, okPrefix string)
	// onConnect queues what a new backend connection must send before any
	// request (Redis AUTH and SELECT).
	onConnect(b *backend)
	// push handles one reply from a connection in push mode (pub/sub).
	push(b *backend, reply []byte)
	// pushFrame frames the first complete reply on a push connection.
	pushFrame(buf []byte) (n int, err error)
	// closeClient releases a closing client's protocol state (dedicated
	// connections).
	closeClient(cl *client)
	// inSession reports whether the client's session lives on its
	// dedicated connections: a transaction (or WATCH) open, or
	// subscriptions.
	inSession(cl *client) bool
}

package proxy

import (
	"crypto/sha256"
	"crypto/subtle"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/proxy/memcache"
)

// mcUsers returns a memcache pool's auth_file users by name, with the
// SHA-256 of each password, or nil when the pool has no auth_file. A name
// on several lines has each line's password, as memcached accepts any.
func mcUsers(cfg *config.Pool) map[string][][sha256.Size]byte {
	if cfg.AuthFile == "" && len(cfg.AuthUsers) == 0 {
		return nil
	}
	us := map[string][][sha256.Size]byte{}
	for _, u := range cfg.AuthUsers {
		us[u.Name] = append(us[u.Name], sha256.Sum256([]byte(u.Password)))
	}
	return us
}

// authStep serves the start of an unauthenticated memcache client's input
// (memcache.ParseAuth): a `set` carrying "user password" is checked
// against the pool's auth_file and answered STORED or with memcached's
// failure; anything else gets CLIENT_ERROR unauthenticated. The
// MaxAuthFailures-th wrong password in a row is answered and the
// connection closed, as for Redis pools. It returns the bytes used, 0 when
// more input is needed.
func (m *memcacheCodec) authStep(cl *client, buf []byte) int {
	st := memcache.ParseAuth(buf)
	switch {
	case st.Close:
		cl.l.pools[m.pr.idx].clientErr.Add(1)
		cl.closeWith(nil)
		return len(buf)
	case st.N == 0:
		return 0
	case st.Reply != "":
		cl.refuse(RejectRefused, []byte(st.Reply))
		return st.N
	}
	if m.checkUser(st.User, st.Pass) {
		cl.mcAuthed, cl.mcAuthFails = true, 0
		m.local(cl, []byte(memcache.AuthOK), false)
		return st.N
	}
	cl.mcAuthFails++
	cl.authFailed(m.pr, cl.mcAuthFails)
	if cl.mcAuthFails >= MaxAuthFailures {
		cl.l.pools[m.pr.idx].clientErr.Add(1)
		cl.closeWith([]byte(memcache.AuthFailure))
		return len(buf)
	}
	cl.refuse(RejectRefused, []byte(memcache.AuthFailure))
	return st.N
}

// checkUser reports whether user and pass are a line of the auth_file,
// comparing password hashes in constant time.
func (m *memcacheCodec) checkUser(user, pass []byte) bool {
	sums, ok := m.users[string(user)]
	if !ok {
		return false
	}
	sum := sha256.Sum256(pass)
	match := 0
	for _, s := range sums {
		match |= subtle.ConstantTimeCompare(sum[:], s[:])
	}
	return match == 1
}

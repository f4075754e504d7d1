package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// aclUser is a client account of a Redis pool version: who AUTH names,
// the SHA-256 of its password, and what it may run.
type aclUser struct {
	name string
	sum  [sha256.Size]byte
	// acl is the user's compiled command rules; nil allows every command
	// (the default user of a pool with redis_auth or without credentials).
	acl *resp.ACL
}

// check reports whether pass is the user's password, in constant time.
func (u *aclUser) check(pass []byte) bool {
	sum := sha256.Sum256(pass)
	return subtle.ConstantTimeCompare(sum[:], u.sum[:]) == 1
}

// allows reports whether the user may run cmd. It does not allocate.
func (u *aclUser) allows(cmd *resp.Command) bool {
	return u.acl == nil || u.acl.Allows(cmd)
}

// respUsers are a Redis pool version's client accounts, built once per
// version and read-only after.
type respUsers struct {
	byName map[string]*aclUser
	// def is the user AUTH <password> (no user name) checks: redis_auth's
	// (every command) or the configured user named default; nil if neither.
	def *aclUser
	// open: neither redis_auth nor users. Clients start authenticated as
	// def, which has no password and runs every command, as a Redis
	// server without requirepass.
	open bool
}

// newRespUsers builds the accounts of cfg: redis_auth as the default user
// with every command, and cfg.Users with their compiled rules.
func newRespUsers(cfg *config.Pool) (*respUsers, error) {
	us := &respUsers{byName: map[string]*aclUser{}}
	if cfg.RedisAuth == "" && len(cfg.Users) == 0 {
		us.open = true
		us.def = &aclUser{name: "default"}
		return us, nil
	}
	if cfg.RedisAuth != "" {
		us.def = &aclUser{name: "default", sum: sha256.Sum256([]byte(cfg.RedisAuth))}
		us.byName["default"] = us.def
	}
	for i, cu := range cfg.Users {
		u := &aclUser{name: cu.Name}
		if cu.PasswordSHA256 != "" {
			if n, err := hex.Decode(u.sum[:], []byte(cu.PasswordSHA256)); err != nil || n != sha256.Size {
				return nil, fmt.Errorf("users[%d] %q: password_sha256: want 64 hex digits", i, cu.Name)
			}
		} else {
			u.sum = sha256.Sum256([]byte(cu.Password))
		}
		acl, err := resp.NewACL(cu.Commands)
		if err != nil {
			return nil, fmt.Errorf("users[%d] %q: commands: %w", i, cu.Name, err)
		}
		u.acl = acl
		if _, dup := us.byName[cu.Name]; dup {
			return nil, fmt.Errorf("users[%d] %q: given twice (or named default beside redis_auth)", i, cu.Name)
		}
		us.byName[cu.Name] = u
		if cu.Name == "default" {
			us.def = u
		}
	}
	return us, nil
}

// lookup returns the user named name, or nil. It does not allocate.
func (us *respUsers) lookup(name []byte) *aclUser {
	return us.byName[string(name)]
}

// serverAuth returns the AUTH command the proxy sends on each connection to
// a server of cfg (server_user/server_password, else redis_auth), or nil.
func serverAuth(cfg *config.Pool) []byte {
	user, pw := cfg.ServerAuth()
	switch {
	case pw == "":
		return nil
	case user == "":
		return resp.AppendCommand(nil, []byte("AUTH"), []byte(pw))
	default:
		return resp.AppendCommand(nil, []byte("AUTH"), []byte(user), []byte(pw))
	}
}

// followUsers re-reads the client's user from the pool version rc serves
// after a reload: the same name's rules and, if the user is gone, no user
// (the client must AUTH again). A client of a pool without credentials is
// the default user of whatever the version has.
func (rc *respCodec) followUsers(cl *client) {
	rs := cl.rs
	rs.usersOf = rc.users
	if rc.users.open {
		rs.authed, rs.user = true, rc.users.def // no credentials any more
		return
	}
	if !rs.authed {
		return
	}
	var u *aclUser
	if rs.user == nil || rs.user.name == "default" {
		u = rc.users.def
	} else {
		u = rc.users.byName[rs.user.name]
	}
	rs.user = u
	rs.authed = u != nil
}

package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// access is what the admin listener lets through: the bearer token (none
// when hasToken is false) and whether /debug/pprof/ is served. It is
// replaced whole, never changed.
type access struct {
	hasToken bool
	sum      [sha256.Size]byte // the token's SHA-256, compared in constant time
	pprof    bool
}

func newAccess(token string, pprof bool) *access {
	a := &access{pprof: pprof}
	if token != "" {
		a.hasToken = true
		a.sum = sha256.Sum256([]byte(token))
	}
	return a
}

// allows reports whether an Authorization header value carries the token.
// Both sides are hashed first, so the comparison takes the same time
// whatever the length or the content of the guess.
func (a *access) allows(header string) bool {
	if !a.hasToken {
		return true
	}
	const prefix = "bearer "
	if len(header) < len(prefix) || !strings.EqualFold(header[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(header[len(prefix):])))
	return subtle.ConstantTimeCompare(got[:], a.sum[:]) == 1
}

// isProbe reports whether path is served without the token: the probes.
func isProbe(path string) bool { return path == "/healthz" || path == "/readyz" }

// guard wraps next with the access now in force: /debug/pprof/ answers 404
// unless pprof is on, and every path but /healthz and /readyz answers 401
// with WWW-Authenticate: Bearer unless the request carries the token.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := s.access.Load()
		if !isProbe(r.URL.Path) && !a.allows(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cacheproxy admin"`)
			http.Error(w, "unauthorized: send Authorization: Bearer <admin.token>", http.StatusUnauthorized)
			return
		}
		if !a.pprof && strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			http.NotFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

package admin_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/admin"
	"github.com/cacheproxy/cacheproxy/config"
)

// getAuth fetches path with the Authorization header auth ("" for none)
// and returns the status, the WWW-Authenticate header and the body.
func getAuth(t *testing.T, s *admin.Server, path, auth string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+s.Addr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(b)
}

func TestAdminToken(t *testing.T) {
	src := &fakeSource{}
	src.set(true, nil)
	s := startAdmin(t, admin.Options{Source: src, Token: "s3cret-token", Pprof: true})
	const good = "Bearer s3cret-token"
	tests := []struct {
		path, auth string
		wantCode   int
		wantBody   string // prefix
	}{
		{"/healthz", "", 200, "ok\n"},
		{"/readyz", "", 200, "ready\n"},
		{"/healthz", "Bearer wrong", 200, "ok\n"},
		{"/metrics", "", 401, "unauthorized"},
		{"/metrics", "Bearer wrong", 401, "unauthorized"},
		{"/metrics", "Bearer s3cret-toke", 401, "unauthorized"},
		{"/metrics", "Bearer s3cret-token2", 401, "unauthorized"},
		{"/metrics", "Basic s3cret-token", 401, "unauthorized"},
		{"/metrics", "s3cret-token", 401, "unauthorized"},
		{"/hotkeys", "", 401, "unauthorized"},
		{"/debug/pprof/", "", 401, "unauthorized"},
		{"/nope", "", 401, "unauthorized"}, // no probing for paths either
		{"/metrics", good, 200, "# HELP"},
		{"/metrics", "bearer s3cret-token", 200, "# HELP"}, // the scheme is case-insensitive (RFC 7235)
		{"/hotkeys", good, 200, `{"pools":{}}`},
		{"/debug/pprof/cmdline", good, 200, ""},
		{"/nope", good, 404, "404 page not found"},
	}
	for _, tt := range tests {
		code, www, body := getAuth(t, s, tt.path, tt.auth)
		if code != tt.wantCode || !strings.HasPrefix(body, tt.wantBody) {
			t.Errorf("GET %s (Authorization %q): got %d %q; want %d %q", tt.path, tt.auth, code, body, tt.wantCode, tt.wantBody)
		}
		if wantWWW := code == 401; (www != "") != wantWWW || (wantWWW && !strings.HasPrefix(www, "Bearer")) {
			t.Errorf("GET %s (Authorization %q): WWW-Authenticate %q on a %d", tt.path, tt.auth, www, code)
		}
	}
}

func TestAdminPprofOffByDefault(t *testing.T) {
	src := &fakeSource{}
	s := startAdmin(t, admin.Options{Source: src})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
		if code, body := get(t, s, path); code != http.StatusNotFound {
			t.Errorf("GET %s with pprof off: got %d %q; want 404", path, code, body)
		}
	}
	if code, _ := get(t, s, "/metrics"); code != http.StatusOK {
		t.Errorf("GET /metrics without a token configured: got %d; want 200", code)
	}
}

// TestAdminAccessReload checks that SetConfig (what a reload calls)
// switches the token and pprof on the running listener.
func TestAdminAccessReload(t *testing.T) {
	src := &fakeSource{}
	s := startAdmin(t, admin.Options{Source: src})
	if code, _, _ := getAuth(t, s, "/metrics", ""); code != 200 {
		t.Fatalf("GET /metrics before the reload: got %d; want 200", code)
	}
	s.SetConfig(&config.Config{Admin: config.Admin{Token: "t1", Pprof: true}})
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/metrics", "", 401},
		{"/metrics", "Bearer t1", 200},
		{"/debug/pprof/cmdline", "Bearer t1", 200},
		{"/readyz", "", 503}, // open, and not ready: the fake says so
	} {
		if code, _, body := getAuth(t, s, c.path, c.auth); code != c.want {
			t.Errorf("after token t1: GET %s (%q): got %d %q; want %d", c.path, c.auth, code, body, c.want)
		}
	}
	s.SetConfig(&config.Config{Admin: config.Admin{Token: "t2"}})
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/metrics", "Bearer t1", 401},
		{"/metrics", "Bearer t2", 200},
		{"/debug/pprof/cmdline", "Bearer t2", 404},
	} {
		if code, _, body := getAuth(t, s, c.path, c.auth); code != c.want {
			t.Errorf("after token t2: GET %s (%q): got %d %q; want %d", c.path, c.auth, code, body, c.want)
		}
	}
	s.SetConfig(&config.Config{})
	if code, _, _ := getAuth(t, s, "/metrics", ""); code != 200 {
		t.Errorf("after the token is removed: GET /metrics: got %d; want 200", code)
	}
}

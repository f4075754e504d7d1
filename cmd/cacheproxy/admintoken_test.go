package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// TestReloadAdminToken: POST /reload turns the admin token on, rotates it
// (a re-read token_file) and switches pprof, each from the next request
// on; /healthz stays open throughout.
func TestReloadAdminToken(t *testing.T) {
	adminAddr, listen := testserver.FreeAddr(t), testserver.FreeAddr(t)
	base := reloadConf(adminAddr, listen, 1)
	f := newReloadFixture(t, base)
	do := func(method, path, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+adminAddr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do(http.MethodGet, "/debug/pprof/cmdline", ""); code != 404 {
		t.Errorf("pprof before the reload: got %d; want 404 (off by default)", code)
	}
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte("tok-AAA1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withToken := strings.Replace(base, "admin:\n", "admin:\n  token_file: "+tokFile+"\n  pprof: true\n", 1)
	f.write(withToken)
	want := `admin.token_file "" -> ` + tokFile + "; admin.token changed; admin.pprof false -> true\n"
	if code, body := do(http.MethodPost, "/reload", ""); code != 200 || body != want {
		t.Fatalf("POST /reload turning the token on: got %d %q; want 200 %q", code, body, want)
	}
	for _, c := range []struct {
		method, path, token string
		want                int
	}{
		{http.MethodGet, "/metrics", "", 401},
		{http.MethodPost, "/reload", "", 401},
		{http.MethodGet, "/healthz", "", 200},
		{http.MethodGet, "/metrics", "tok-AAA1", 200},
		{http.MethodGet, "/debug/pprof/cmdline", "tok-AAA1", 200},
	} {
		if code, body := do(c.method, c.path, c.token); code != c.want {
			t.Errorf("%s %s (token %q): got %d %q; want %d", c.method, c.path, c.token, code, body, c.want)
		}
	}
	// Rotate the file: the configuration is the same, the token is not.
	if err := os.WriteFile(tokFile, []byte("tok-BBB2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := do(http.MethodPost, "/reload", "tok-AAA1"); code != 200 || body != "admin.token changed\n" {
		t.Fatalf("POST /reload after rotating the token file: got %d %q; want 200 %q", code, body, "admin.token changed\n")
	}
	if code, _ := do(http.MethodGet, "/metrics", "tok-AAA1"); code != 401 {
		t.Errorf("the old token after the rotation: got %d; want 401", code)
	}
	if code, _ := do(http.MethodGet, "/metrics", "tok-BBB2"); code != 200 {
		t.Errorf("the new token after the rotation: got %d; want 200", code)
	}
	if strings.Contains(f.log.String(), "tok-AAA1") || strings.Contains(f.log.String(), "tok-BBB2") {
		t.Errorf("the log shows a token:\n%s", f.log.String())
	}
}

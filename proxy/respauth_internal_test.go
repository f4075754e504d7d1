package proxy

import (
	"testing"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/proxy/resp"
)

// TestACLCheckNoAlloc: the per-command check (and the user lookup AUTH
// does) allocate nothing.
func TestACLCheckNoAlloc(t *testing.T) {
	us, err := newRespUsers(&config.Pool{Users: []config.RedisUser{{Name: "app", Password: "pw", Commands: []string{"+@read"}}}})
	if err != nil {
		t.Fatal(err)
	}
	name := []byte("app")
	get, set := resp.Lookup([]byte("get")), resp.Lookup([]byte("set"))
	allocs := testing.AllocsPerRun(1000, func() {
		u := us.lookup(name)
		if u == nil || !u.allows(get) || u.allows(set) {
			t.Fatal("wrong answer")
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per check: %v; want 0", allocs)
	}
}

// TestRespUsers: who AUTH <password> checks, and redis_auth's user runs
// every command.
func TestRespUsers(t *testing.T) {
	cmdSet := resp.Lookup([]byte("set"))
	for _, tc := range []struct {
		name      string
		pool      config.Pool
		open      bool
		def       string // the default user's password ("" none)
		defAllSet bool
	}{
		{"nothing configured", config.Pool{}, true, "", true},
		{"redis_auth", config.Pool{RedisAuth: "pw", Users: []config.RedisUser{{Name: "a", Password: "x", Commands: []string{}}}}, false, "pw", true},
		{"user default", config.Pool{Users: []config.RedisUser{{Name: "default", Password: "d", Commands: []string{"+get"}}}}, false, "d", false},
		{"no default", config.Pool{Users: []config.RedisUser{{Name: "a", Password: "x", Commands: []string{"+@all"}}}}, false, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			us, err := newRespUsers(&tc.pool)
			if err != nil {
				t.Fatal(err)
			}
			if us.open != tc.open {
				t.Errorf("open %t; want %t", us.open, tc.open)
			}
			if tc.open {
				return
			}
			if tc.def == "" {
				if us.def != nil {
					t.Errorf("a default user %q; want none", us.def.name)
				}
				return
			}
			if us.def == nil || !us.def.check([]byte(tc.def)) || us.def.check([]byte(tc.def+"x")) {
				t.Fatalf("default user does not check password %q", tc.def)
			}
			if got := us.def.allows(cmdSet); got != tc.defAllSet {
				t.Errorf("default user allows SET: %t; want %t", got, tc.defAllSet)
			}
		})
	}
	if _, err := newRespUsers(&config.Pool{Users: []config.RedisUser{{Name: "a", Password: "x", Commands: []string{"+nosuch"}}}}); err == nil {
		t.Error("an unknown command in a rule: no error")
	}
}

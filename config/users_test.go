package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestLoadUsers(t *testing.T) {
	const text = `pools:
  r:
    listen: 127.0.0.1:22122
    protocol: redis
    server_user: cacheproxy
    server_password: backend-pw
    users:
      - name: app
        password: app-pw
        commands: ["+@read", "+@write", "-@dangerous", "-flushall"]
      - name: ops
        password_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
        commands: [allcommands]
      - name: nobody
        password: x
        commands: []
    servers: ["127.0.0.1:6379:1"]
  t:
    listen: 127.0.0.1:22123
    protocol: redis
    redis_auth: twem
    servers: ["127.0.0.1:6379:1"]
`
	cfg, warns, err := Parse("c.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Fatalf("warnings: %v", warns)
	}
	r := cfg.Pool("r")
	want := []RedisUser{
		{Name: "app", Password: "app-pw", Commands: []string{"+@read", "+@write", "-@dangerous", "-flushall"}},
		{Name: "ops", PasswordSHA256: "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", Commands: []string{"allcommands"}},
		{Name: "nobody", Password: "x", Commands: []string{}},
	}
	if !reflect.DeepEqual(r.Users, want) {
		t.Fatalf("users %+v; want %+v", r.Users, want)
	}
	if u, pw := r.ServerAuth(); u != "cacheproxy" || pw != "backend-pw" {
		t.Errorf("pool r ServerAuth: %q %q", u, pw)
	}
	// Without server_password the backends get redis_auth, as in twemproxy.
	if u, pw := cfg.Pool("t").ServerAuth(); u != "" || pw != "twem" {
		t.Errorf("pool t ServerAuth: %q %q; want redis_auth", u, pw)
	}
	// Clone copies the rules.
	c := r.Clone()
	c.Users[0].Commands[0] = "changed"
	if r.Users[0].Commands[0] != "+@read" {
		t.Error("Clone shares a user's commands")
	}
	// A twemproxy file does not take them.
	if _, _, err := Parse("n.yml", []byte("a:\n  listen: 127.0.0.1:22121\n  redis: true\n  server_password: x\n  servers:\n   - 127.0.0.1:6379:1\n")); err == nil {
		t.Error("a nutcracker.yml with server_password loaded")
	}
}

func TestLoadUsersBad(t *testing.T) {
	const head = "pools:\n  r:\n    listen: 127.0.0.1:22122\n    protocol: redis\n    servers: [\"127.0.0.1:6379:1\"]\n"
	for _, tc := range []struct{ name, text, want string }{
		{"not a list", head + "    users: app\n", `6: pool "r": users: want a list`},
		{"no name", head + "    users: [{password: x, commands: [+get]}]\n", `pool "r": users[0].name: missing`},
		{"space in name", head + "    users: [{name: a b, password: x, commands: [+get]}]\n", `users[0].name: "a b": must not contain white space`},
		{"twice", head + "    users: [{name: a, password: x, commands: [+get]}, {name: a, password: y, commands: [+get]}]\n", `users[1].name: "a" given twice`},
		{"no password", head + "    users: [{name: a, commands: [+get]}]\n", `user "a": set password or password_sha256`},
		{"both passwords", head + "    users: [{name: a, password: x, password_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8, commands: [+get]}]\n", `not both`},
		{"short sha", head + "    users: [{name: a, password_sha256: abc, commands: [+get]}]\n", `want 64 hex digits`},
		{"no commands", head + "    users: [{name: a, password: x}]\n", `users[0].commands: user "a": missing`},
		{"unknown command", head + "    users: [{name: a, password: x, commands: [+nosuch]}]\n", `"+nosuch": unknown command or category name in ACL`},
		{"unknown category", head + "    users: [{name: a, password: x, commands: [+@nosuch]}]\n", `unknown ACL category "nosuch"`},
		{"key pattern", head + "    users: [{name: a, password: x, commands: [\"~*\"]}]\n", `"~*": want +command`},
		{"unknown key", head + "    users: [{name: a, password: x, commands: [+get], keys: [\"*\"]}]\n", `users[0].keys: unknown key`},
		{"default beside redis_auth", head + "    redis_auth: pw\n    users: [{name: default, password: x, commands: [+get]}]\n", `conflicts with redis_auth`},
		{"server_user alone", head + "    server_user: u\n", `server_user: "u" without server_password`},
		{"users on memcache", "pools:\n  m:\n    listen: 127.0.0.1:22122\n    servers: [\"127.0.0.1:11211:1\"]\n    users: [{name: a, password: x, commands: [+get]}]\n", `users: only a redis pool has users`},
		{"server_password on memcache", "pools:\n  m:\n    listen: 127.0.0.1:22122\n    servers: [\"127.0.0.1:11211:1\"]\n    server_password: x\n", `server_password: only a redis pool sends credentials`},
		{"server_user on memcache", "pools:\n  m:\n    listen: 127.0.0.1:22122\n    servers: [\"127.0.0.1:11211:1\"]\n    server_user: u\n", `server_user: only a redis pool sends credentials`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse("c.yaml", []byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestDiffUsers: users added and removed by name, rules shown, passwords
// and server_password changed without their values.
func TestDiffUsers(t *testing.T) {
	prev, next := mustParse(t, diffBase), mustParse(t, diffBase)
	prev.Pool("r").Users = []RedisUser{{Name: "a", Password: "x", Commands: []string{"+get"}}, {Name: "b", Password: "y", Commands: []string{"+get"}}}
	next.Pool("r").Users = []RedisUser{{Name: "a", Password: "z", Commands: []string{"+get", "+set"}}, {Name: "c", Password: "y", Commands: []string{"+get"}}}
	next.Pool("r").ServerPassword = "swordfish"
	got := Diff(prev, next).String()
	want := `pool "r": server_password changed; pool "r": users a,b -> a,c; pool "r": users.a.commands +get -> +get +set; pool "r": users.a.password changed`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, secret := range []string{"swordfish", "x", "z"} {
		if strings.Contains(got, secret) {
			t.Errorf("the change shows the secret %q", secret)
		}
	}
}

func TestLoadAuthFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := dir + "/" + name
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good", "app:secret\nops:p:w\r\n")
	pool := func(path string) string {
		return "pools:\n  m:\n    listen: 127.0.0.1:22122\n    auth_file: " + path + "\n    servers: [\"127.0.0.1:11211:1\"]\n"
	}
	cfg, _, err := Parse("c.yaml", []byte(pool(good)))
	if err != nil {
		t.Fatal(err)
	}
	want := []MemcacheUser{{"app", "secret"}, {"ops", "p:w"}}
	if got := cfg.Pool("m").AuthUsers; !reflect.DeepEqual(got, want) {
		t.Fatalf("AuthUsers %+v; want %+v", got, want)
	}
	for _, tc := range []struct{ name, text, want string }{
		{"no colon", "app\n", ":1: want user:password"},
		{"empty line", "app:x\n\nb:y\n", ":2: want user:password"},
		{"space in password", "app:a b\n", `:1: the password of "app" is empty or has a space`},
		{"empty password", "app:\n", `the password of "app" is empty`},
		{"empty file", "", "want user:password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse("c.yaml", []byte(pool(write(tc.name, tc.text))))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v; want an error containing %q", err, tc.want)
			}
		})
	}
	if _, _, err := Parse("c.yaml", []byte(pool(dir+"/nosuch"))); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	redis := "pools:\n  r:\n    listen: 127.0.0.1:22122\n    protocol: redis\n    auth_file: " + good + "\n    servers: [\"127.0.0.1:6379:1\"]\n"
	if _, _, err := Parse("c.yaml", []byte(redis)); err == nil || !strings.Contains(err.Error(), "only a memcache pool reads an auth_file") {
		t.Errorf("auth_file on a redis pool: %v", err)
	}
	// The contents changing is a secret change.
	next, _, err := Parse("c.yaml", []byte(pool(write("next", "app:other\n"))))
	if err != nil {
		t.Fatal(err)
	}
	if got := Diff(cfg, next).String(); !strings.Contains(got, `auth_file contents changed`) || strings.Contains(got, "other") {
		t.Errorf("diff %s", got)
	}
}

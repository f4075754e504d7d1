package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// diffBase is the configuration every TestDiff case edits.
const diffBase = `admin:
  listen: 127.0.0.1:9121
pools:
  mc:
    listen: 127.0.0.1:22121
    timeout: 400ms
    servers:
      - 127.0.0.1:11211:1 mc1
      - 127.0.0.1:11212:1 mc2
      - 127.0.0.1:11213:1 mc3
  r:
    listen: 127.0.0.1:22122
    protocol: redis
    redis_auth: hunter2
    servers:
      - name: shard1
        addr: 127.0.0.1:6379
        replicas: [127.0.0.1:6380]
`

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	cfg, _, err := Parse("c.yaml", []byte(text))
	if err != nil {
		t.Fatalf("parse:\n%s\n%v", text, err)
	}
	return cfg
}

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name, next, want string
	}{
		{"same", diffBase, "no change"},
		{"a fourth server", strings.Replace(diffBase, "mc3\n", "mc3\n      - 127.0.0.1:11214:1 mc4\n", 1),
			`pool "mc": server mc4 added (127.0.0.1:11214 weight 1)`},
		{"keys, a server removed and one changed, a pool removed, a pool added", `admin:
  listen: 127.0.0.1:9122
stats:
  listen: 127.0.0.1:22222
pools:
  mc:
    listen: 127.0.0.1:22121
    timeout: 1s
    hash: murmur
    auto_eject_hosts: true
    limits:
      max_clients: 100
    servers:
      - 127.0.0.1:11211:2 mc1
      - 127.0.0.1:11213:1 mc3
  m2:
    listen: 127.0.0.1:22123
    servers: [127.0.0.1:11215:1]
`, `admin.listen 127.0.0.1:9121 -> 127.0.0.1:9122; stats.listen "" -> 127.0.0.1:22222; ` +
			`pool "r" removed (redis listen 127.0.0.1:22122, 1 servers); ` +
			`pool "m2" added (memcache listen 127.0.0.1:22123, 1 servers); ` +
			`pool "mc": hash fnv1a_64 -> murmur; pool "mc": timeout 400ms -> 1s; pool "mc": auto_eject_hosts false -> true; ` +
			`pool "mc": limits.max_clients 0 -> 100; ` +
			`pool "mc": server mc2 removed (127.0.0.1:11212 weight 1); ` +
			`pool "mc": server mc1 127.0.0.1:11211 weight 1 -> 127.0.0.1:11211 weight 2`},
		{"secret, replicas, order", `admin:
  listen: 127.0.0.1:9121
pools:
  mc:
    listen: 127.0.0.1:22121
    timeout: 400ms
    servers:
      - 127.0.0.1:11213:1 mc3
      - 127.0.0.1:11211:1 mc1
      - 127.0.0.1:11212:1 mc2
  r:
    listen: 127.0.0.1:22122
    protocol: redis
    redis_auth: hunter3
    read_policy: prefer_replica
    servers:
      - name: shard1
        addr: 127.0.0.1:6379
        replicas: [127.0.0.1:6381]
`, `pool "mc": servers order mc1,mc2,mc3 -> mc3,mc1,mc2; pool "r": redis_auth changed; ` +
			`pool "r": read_policy primary -> prefer_replica; ` +
			`pool "r": server shard1 127.0.0.1:6379 weight 1 replicas 127.0.0.1:6380 -> 127.0.0.1:6379 weight 1 replicas 127.0.0.1:6381`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev, next := mustParse(t, diffBase), mustParse(t, tc.next)
			if got := Diff(prev, next).String(); got != tc.want {
				t.Errorf("Diff:\ngot  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestDiffSecretNotShown: redis_auth's values appear nowhere in the change.
func TestDiffSecretNotShown(t *testing.T) {
	prev, next := mustParse(t, diffBase), mustParse(t, diffBase)
	next.Pool("r").RedisAuth = "swordfish"
	cs := Diff(prev, next)
	if len(cs) != 1 || cs[0].Old != "" || cs[0].New != "" || !cs[0].Secret {
		t.Fatalf("got %#v; want one secret change with no values", cs)
	}
}

// TestDiffSeesEveryKey changes each field of Config and Pool in turn, by
// reflection, and fails if Diff does not report it: a key added to the
// structs and not to Diff is caught here.
func TestDiffSeesEveryKey(t *testing.T) {
	base := mustParse(t, diffBase)
	skipConfig := map[string]bool{"File": true, "Nutcracker": true, "Pools": true, "pos": true}
	skipPool := map[string]bool{"Name": true}
	var paths []string
	forEachLeaf(reflect.TypeOf(Config{}), nil, skipConfig, func(idx []int, name string) {
		paths = append(paths, name)
		next := mustParse(t, diffBase)
		bump(reflect.ValueOf(next).Elem().FieldByIndex(idx))
		if cs := Diff(base, next); len(cs) == 0 {
			t.Errorf("Config.%s changed: Diff reports no change", name)
		}
	})
	forEachLeaf(reflect.TypeOf(Pool{}), nil, skipPool, func(idx []int, name string) {
		paths = append(paths, "Pool."+name)
		next := mustParse(t, diffBase)
		bump(reflect.ValueOf(next.Pool("mc")).Elem().FieldByIndex(idx))
		if cs := Diff(base, next); len(cs) == 0 {
			t.Errorf("Pool.%s changed: Diff reports no change", name)
		}
	})
	if len(paths) < 25 {
		t.Errorf("only %d fields visited: %v", len(paths), paths)
	}
	// Each field of Server too (but Slots and TLSName: learnt, never
	// configured).
	forEachLeaf(reflect.TypeOf(Server{}), nil, map[string]bool{"Slots": true, "TLSName": true}, func(idx []int, name string) {
		next := mustParse(t, diffBase)
		bump(reflect.ValueOf(&next.Pool("mc").Servers[0]).Elem().FieldByIndex(idx))
		if cs := Diff(base, next); len(cs) == 0 {
			t.Errorf("Server.%s changed: Diff reports no change", name)
		}
	})
}

// forEachLeaf calls fn with the index path of every non-struct field of t
// (descending into struct fields), except the top-level names in skip.
func forEachLeaf(t reflect.Type, prefix []int, skip map[string]bool, fn func(idx []int, name string)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if len(prefix) == 0 && skip[f.Name] {
			continue
		}
		idx := append(append([]int(nil), prefix...), i)
		if f.Type.Kind() == reflect.Struct {
			forEachLeaf(f.Type, idx, skip, func(sub []int, name string) { fn(sub, f.Name+"."+name) })
			continue
		}
		fn(idx, f.Name)
	}
}

// bump changes v to another value of its type.
func bump(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		if v.Type() == reflect.TypeOf(time.Duration(0)) {
			v.SetInt(v.Int() + int64(time.Millisecond))
		} else {
			v.SetInt(v.Int() + 1)
		}
	case reflect.Float64:
		v.SetFloat(v.Float() + 0.25)
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	default:
		panic("bump: unhandled kind " + v.Kind().String())
	}
}

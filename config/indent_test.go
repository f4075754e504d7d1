package config

import (
	"errors"
	"testing"
)

// TestMisindentedServers checks that an item of a servers: list indented
// unlike the first is reported at its own line. nutcracker -t rejects every
// one of these files too (TestMisindentedServersBinary in cmd/cacheproxy
// runs it); the YAML parser alone names the first item's line or line 1.
func TestMisindentedServers(t *testing.T) {
	head := "alpha:\n  listen: 127.0.0.1:22121\n  servers:\n"
	for _, tc := range []struct {
		name, text, want string
	}{
		{"deeper", head + "   - 127.0.0.1:11211:1\n    - 127.0.0.1:11212:1\n",
			`f.yml:5: pool "alpha": servers: list item indented 4 spaces where the first item has 3 spaces: YAML reads it as more text of the item above; indent every item alike`},
		{"deeper named", head + "  - 127.0.0.1:11211:1 one\n  - 127.0.0.1:11212:1 two\n   - 127.0.0.1:11213:1 three\nbeta:\n  listen: 127.0.0.1:22122\n  servers:\n   - 127.0.0.1:11211:1\n",
			`f.yml:6: pool "alpha": servers: list item indented 3 spaces where the first item has 2 spaces: YAML reads it as more text of the item above; indent every item alike`},
		{"shallower", head + "   - 127.0.0.1:11211:1\n  - 127.0.0.1:11212:1\n",
			`f.yml:5: pool "alpha": servers: list item indented 2 spaces where the first item has 3 spaces: indent every item alike`},
		{"shallower second pool", "a:\n  servers:\n    - 127.0.0.1:1:1\nalpha:\n  listen: 127.0.0.1:22121\n  servers:\n    - 127.0.0.1:11211:1\n\n   # comment\n   - 127.0.0.1:11212:1\n",
			`f.yml:10: pool "alpha": servers: list item indented 3 spaces where the first item has 4 spaces: indent every item alike`},
		{"left of the key", head + " - 127.0.0.1:11211:1\n - 127.0.0.1:11212:1\n",
			`f.yml:4: pool "alpha": servers: list item indented 1 space, less than servers: (2 spaces): indent the items at least as far as servers:`},
		{"native", "pools:\n  p:\n    servers:\n      - name: a\n        addr: 127.0.0.1:6379\n        replicas:\n          - 127.0.0.1:6380\n     - 127.0.0.1:6381:1 b\n",
			`f.yml:8: pool "p": servers: list item indented 5 spaces where the first item has 6 spaces: indent every item alike`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse("f.yml", []byte(tc.text))
			var e *Error
			if !errors.As(err, &e) || len(e.Problems) != 1 {
				t.Fatalf("got %v; want one problem", err)
			}
			if got := e.Problems[0].String(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
	// Lists indented alike, at the key's column or deeper, native maps with
	// nested replicas, and flow lists are fine.
	for _, ok := range []string{
		head + "  - 127.0.0.1:11211:1\n  - 127.0.0.1:11212:1\n",
		head + "   - 127.0.0.1:11211:1\n   # - commented\n   - 127.0.0.1:11212:1\nbeta:\n  listen: 127.0.0.1:22122\n  servers:\n  - 127.0.0.1:11211:1\n",
		"alpha:\n  listen: 127.0.0.1:22121\n  servers: [127.0.0.1:11211:1]\n",
		"pools:\n  p:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    servers:\n      - name: a\n        addr: 127.0.0.1:6379\n        replicas:\n          - 127.0.0.1:6380\n      - 127.0.0.1:6381:1 b\n    timeout: 400\n",
	} {
		if probs := misindentedServers("f.yml", []byte(ok)); len(probs) != 0 {
			t.Errorf("%q: got %v; want none", ok, probs)
		}
		if _, _, err := Parse("f.yml", []byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

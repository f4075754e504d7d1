package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const adminPools = "pools:\n  a:\n    listen: 127.0.0.1:22121\n    servers: [127.0.0.1:11211:1]\n"

func TestLoadAdminAccess(t *testing.T) {
	cfg, _, err := Load(writeFile(t, "admin:\n  listen: 127.0.0.1:9121\n  token: abc123\n  pprof: true\n"+adminPools))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := (Admin{Listen: "127.0.0.1:9121", Token: "abc123", Pprof: true}); cfg.Admin != want {
		t.Errorf("Admin: got %+v; want %+v", cfg.Admin, want)
	}

	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte("  from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err = Load(writeFile(t, "admin:\n  listen: 127.0.0.1:9121\n  token_file: "+tokFile+"\n"+adminPools))
	if err != nil {
		t.Fatalf("Load with token_file: %v", err)
	}
	if want := (Admin{Listen: "127.0.0.1:9121", Token: "from-a-file", TokenFile: tokFile}); cfg.Admin != want {
		t.Errorf("Admin: got %+v; want %+v", cfg.Admin, want)
	}
}

func TestLoadAdminAccessBad(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	twoWords := filepath.Join(dir, "two")
	big := filepath.Join(dir, "big")
	for name, data := range map[string]string{empty: "\n\n", twoWords: "a b\n", big: strings.Repeat("x", maxTokenFile+1)} {
		if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name, admin string
		want        []string
	}{
		{"both", "  token: x\n  token_file: " + empty + "\n", []string{`3: admin.token_file: set admin.token or admin.token_file, not both`}},
		{"missing file", "  token_file: " + missing + "\n", []string{`2: admin.token_file: open ` + missing + `: no such file or directory`}},
		{"empty file", "  token_file: " + empty + "\n", []string{`2: admin.token_file: ` + empty + `: empty (want one line, the token)`}},
		{"two words", "  token_file: " + twoWords + "\n", []string{`2: admin.token_file: ` + twoWords + `: the token must be one word on one line`}},
		{"big file", "  token_file: " + big + "\n", []string{`2: admin.token_file: ` + big + `: longer than 4096 bytes (want one line, the token)`}},
		{"token with a space", "  token: \"a b\"\n", []string{`2: admin.token: must not contain white space (it is sent as Authorization: Bearer <token>)`}},
		{"pprof not a bool", "  pprof: maybe\n", nil}, // checked below: the parser's own wording
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "admin:\n"+tc.admin+adminPools)
			cfg, _, err := Load(path)
			if err == nil {
				t.Fatalf("Load: got %+v, no error", cfg.Admin)
			}
			got := problems(t, err, path)
			if tc.want == nil {
				if len(got) != 1 || !strings.HasPrefix(got[0], "2: admin.pprof: ") {
					t.Errorf("problems: got %q; want one on admin.pprof, line 2", got)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestDiffAdminAccess(t *testing.T) {
	prev := &Config{Admin: Admin{Listen: "127.0.0.1:9121", Token: "old-secret"}}
	next := &Config{Admin: Admin{Listen: "127.0.0.1:9121", Token: "new-secret", TokenFile: "/run/tok", Pprof: true}}
	got := Diff(prev, next).String()
	want := `admin.token_file "" -> /run/tok; admin.token changed; admin.pprof false -> true`
	if got != want {
		t.Errorf("Diff: got %q; want %q", got, want)
	}
	if strings.Contains(got, "secret") {
		t.Errorf("Diff shows the token: %q", got)
	}
	if cs := Diff(next, next); len(cs) != 0 {
		t.Errorf("Diff of a config with itself: %v", cs)
	}
}

// TestSidecarAdmin loads the ConfigMap's config.yaml from
// deploy/kubernetes/sidecar.yaml (with the Secret's path pointed at a
// temporary token file): the admin port is reachable by the kubelet and
// needs the token; pprof is off.
func TestSidecarAdmin(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "deploy", "kubernetes", "sidecar.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var text string
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("no ConfigMap with config.yaml in sidecar.yaml: %v", err)
		}
		if doc.Kind == "ConfigMap" {
			text = doc.Data["config.yaml"]
			break
		}
	}
	const secretPath = "/etc/cacheproxy-admin/token"
	if !strings.Contains(text, "token_file: "+secretPath) {
		t.Fatalf("sidecar config.yaml does not read the token from %s:\n%s", secretPath, text)
	}
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("k8s-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Load(writeFile(t, strings.Replace(text, secretPath, tok, 1)))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := (Admin{Listen: "0.0.0.0:9121", Token: "k8s-secret", TokenFile: tok}); cfg.Admin != want {
		t.Errorf("admin: got %+v; want %+v", cfg.Admin, want)
	}
}

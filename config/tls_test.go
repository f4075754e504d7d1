package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

func TestLoadTLS(t *testing.T) {
	pki := testserver.NewPKI(t)
	text := `pools:
  a:
    listen: 127.0.0.1:22121
    tls:
      cert_file: ` + pki.CertFile + `
      key_file: ` + pki.KeyFile + `
      client_ca_file: ` + pki.CAFile + `
      min_version: "1.3"
    servers: [127.0.0.1:11211:1]
  r:
    listen: 127.0.0.1:22122
    protocol: redis
    server_tls:
      ca_file: ` + pki.CAFile + `
      server_name: cache.internal
      cert_file: ` + pki.ClientCertFile + `
      key_file: ` + pki.ClientKeyFile + `
    servers: [127.0.0.1:6379:1]
  e:
    listen: 127.0.0.1:22123
    protocol: redis
    server_tls: {}
    servers: [127.0.0.1:6380:1]
`
	cfg, warns, err := Parse("c.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Fatalf("warnings: %v", warns)
	}
	wantTLS := TLS{CertFile: pki.CertFile, KeyFile: pki.KeyFile, ClientCAFile: pki.CAFile, MinVersion: "1.3"}
	if a := cfg.Pool("a"); a.TLS != wantTLS || !a.TLS.Enabled() || a.ServerTLS.Enabled {
		t.Fatalf("pool a: tls %+v, server_tls %+v; want %+v and off", a.TLS, a.ServerTLS, wantTLS)
	}
	wantS := ServerTLS{Enabled: true, CAFile: pki.CAFile, ServerName: "cache.internal", CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}
	if r := cfg.Pool("r"); r.ServerTLS != wantS || r.TLS.Enabled() {
		t.Fatalf("pool r: server_tls %+v; want %+v", r.ServerTLS, wantS)
	}
	if e := cfg.Pool("e"); e.ServerTLS != (ServerTLS{Enabled: true}) {
		t.Fatalf("pool e: server_tls %+v; want enabled with the system roots", e.ServerTLS)
	}
}

func TestLoadTLSBad(t *testing.T) {
	pki := testserver.NewPKI(t)
	missing := filepath.Join(t.TempDir(), "missing.crt")
	pool := func(lines string) string {
		return "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n" + lines + "    servers: [127.0.0.1:6379:1]\n"
	}
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"cert without key", pool("    tls: {cert_file: " + pki.CertFile + "}\n"),
			[]string{`5: pool "a": tls: set both cert_file and key_file`}},
		{"missing file", pool("    tls: {cert_file: " + missing + ", key_file: " + pki.KeyFile + "}\n"),
			[]string{`5: pool "a": tls.cert_file: open ` + missing + `: no such file or directory`}},
		{"key of another certificate", pool("    tls: {cert_file: " + pki.CertFile + ", key_file: " + pki.ClientKeyFile + "}\n"),
			[]string{`5: pool "a": tls.cert_file: tls: private key does not match public key`}},
		{"bad version and CA", pool("    tls:\n      cert_file: " + pki.CertFile + "\n      key_file: " + pki.KeyFile +
			"\n      client_ca_file: " + pki.KeyFile + "\n      min_version: \"1.1\"\n"),
			[]string{`8: pool "a": tls.client_ca_file: ` + pki.KeyFile + `: no PEM certificate in it`,
				`9: pool "a": tls.min_version: "1.1": want "1.2" or "1.3"`}},
		{"unknown keys", pool("    tls: {cert: x}\n    server_tls: {verify: true}\n"),
			[]string{`5: pool "a": tls.cert: unknown key (tls has cert_file, key_file, client_ca_file and min_version)`,
				`6: pool "a": server_tls.verify: unknown key (server_tls has ca_file, server_name, cert_file, key_file and insecure_skip_verify)`}},
		{"server_tls half a key pair", pool("    role_check: 1s\n    server_tls: {cert_file: " + pki.ClientCertFile + "}\n"),
			[]string{`6: pool "a": server_tls: set both cert_file and key_file, or neither`}},
		{"tls in a nutcracker file", "a:\n  listen: 127.0.0.1:22121\n  tls: {cert_file: x, key_file: y}\n  servers:\n   - 127.0.0.1:11211:1\n",
			[]string{`3: pool "a": tls: unknown key in a nutcracker.yml file (cacheproxy's own keys need the native shape: put the pools under pools:)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.text)
			_, _, err := Load(path)
			if err == nil {
				t.Fatalf("Load: no error; want %q", tc.want)
			}
			got := problems(t, err, path)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("problems:\ngot  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestTLSInsecureSkipVerifyWarns(t *testing.T) {
	text := "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    server_tls: {insecure_skip_verify: true}\n    servers: [127.0.0.1:6379:1]\n"
	cfg, warns, err := Parse("c.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Pool("a").ServerTLS.InsecureSkipVerify {
		t.Fatal("insecure_skip_verify not parsed")
	}
	if len(warns) != 1 || warns[0].Key != "server_tls.insecure_skip_verify" || !strings.Contains(warns[0].Reason, "not verified") {
		t.Fatalf("warnings %v; want one on server_tls.insecure_skip_verify", warns)
	}
}

func TestDiffTLS(t *testing.T) {
	pki := testserver.NewPKI(t)
	base := "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    servers: [127.0.0.1:6379:1]\n"
	next := "pools:\n  a:\n    listen: 127.0.0.1:22121\n    protocol: redis\n    tls: {cert_file: " + pki.CertFile + ", key_file: " + pki.KeyFile +
		"}\n    server_tls: {ca_file: " + pki.CAFile + "}\n    servers: [127.0.0.1:6379:1]\n"
	cs := Diff(mustParse(t, base), mustParse(t, next))
	var got []string
	for _, c := range cs {
		got = append(got, c.What+"="+c.New)
	}
	want := []string{"tls.cert_file=" + pki.CertFile, "tls.key_file=" + pki.KeyFile, "server_tls=true", "server_tls.ca_file=" + pki.CAFile}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("changes %q; want %q", got, want)
	}
}

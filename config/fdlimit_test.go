package config

import (
	"math"
	"testing"
)

func TestDefaultMaxClients(t *testing.T) {
	cfg, _, err := Parse("x.yml", []byte(`pools:
  mc:
    listen: 127.0.0.1:22121
    server_connections: 2
    servers: [127.0.0.1:11211:1, 127.0.0.1:11212:1, 127.0.0.1:11213:1]
  r:
    listen: 127.0.0.1:22122
    protocol: redis
    servers:
      - addr: 127.0.0.1:6379
        replicas: [127.0.0.1:6380, 127.0.0.1:6381]
      - addr: 127.0.0.1:6382
`))
	if err != nil {
		t.Fatal(err)
	}
	// Per loop: mc 3 servers x 2 connections = 6; r (1+2) + 1 = 4.
	for _, tc := range []struct {
		loops int
		want  int
	}{{1, 10}, {4, 40}, {0, 10}} {
		if got := cfg.BackendConns(tc.loops); got != tc.want {
			t.Errorf("BackendConns(%d): got %d; want %d", tc.loops, got, tc.want)
		}
	}
	for _, tc := range []struct {
		nofile uint64
		loops  int
		want   int
		err    string
	}{
		{1024, 4, 1024 - 40 - FDReserve, ""},
		{1048576, 8, 1048576 - 80 - FDReserve, ""},
		{40 + FDReserve + 4*FDReserve, 4, 4 * FDReserve, ""}, // the full reserve from 256 on
		{128, 4, 128 - 40 - minFDReserve, ""},                // a small limit keeps at least 32
		{200, 4, 200 - 40 - 50, ""},                          // or a quarter
		{40 + minFDReserve + 1, 4, 1, ""},
		{40 + minFDReserve, 4, 0, "file-descriptor limit 72 leaves no room for clients: 40 backend connections (4 loops) and 32 reserved need 72; raise the limit (ulimit -n, LimitNOFILE=)"},
		{math.MaxUint64, 4, math.MaxInt, ""},
	} {
		got, err := cfg.DefaultMaxClients(tc.nofile, tc.loops)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tc.want || gotErr != tc.err {
			t.Errorf("DefaultMaxClients(%d, %d): got %d, %q; want %d, %q", tc.nofile, tc.loops, got, gotErr, tc.want, tc.err)
		}
	}
}

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
	// Per loop, each server and replica has its shared connections and a
	// bulk one: mc 3 servers x (2+1) = 9; r ((1+2) + 1) x (1+1) = 8.
	for _, tc := range []struct {
		loops int
		want  int
	}{{1, 17}, {4, 68}, {0, 17}} {
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
		{1024, 4, 1024 - 68 - FDReserve, ""},
		{1048576, 8, 1048576 - 136 - FDReserve, ""},
		{68 + FDReserve + 4*FDReserve, 4, 4 * FDReserve, ""}, // the full reserve from 256 on
		{128, 4, 128 - 68 - minFDReserve, ""},                // a small limit keeps at least 32
		{200, 4, 200 - 68 - 50, ""},                          // or a quarter
		{68 + minFDReserve + 1, 4, 1, ""},
		{68 + minFDReserve, 4, 0, "file-descriptor limit 100 leaves no room for clients: 68 backend connections (4 loops) and 32 reserved need 100; raise the limit (ulimit -n, LimitNOFILE=)"},
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

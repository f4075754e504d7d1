package respclient_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/respclient"
	"github.com/cacheproxy/cacheproxy/internal/testserver"
)

// DialNetwork reaches a real redis-server on its unix socket and
// authenticates there.
func TestDialUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "redis.sock")
	testserver.Redis(t, "--unixsocket", sock, "--unixsocketperm", "700", "--requirepass", "pw")
	if _, err := respclient.DialNetwork(t.Context(), "unix", sock, "", "wrong", 5*time.Second); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: got %v; want WRONGPASS", err)
	}
	c, err := respclient.DialNetwork(t.Context(), "unix", sock, "", "pw", 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", sock, err)
	}
	defer c.Close()
	// redis-server gives a unix-socket client's local address as the
	// socket's path.
	v, err := c.Do("CLIENT", "INFO")
	if s, ok := v.(string); err != nil || !ok || !strings.Contains(s, " laddr="+sock+":0 ") {
		t.Fatalf("CLIENT INFO: got %#v, %v; want a bulk string with laddr=%s:0", v, err, sock)
	}
}

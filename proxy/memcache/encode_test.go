package memcache

import "testing"

func TestEncoders(t *testing.T) {
	cases := []struct{ got, want string }{
		{string(AppendError(nil, KindError, "")), "ERROR\r\n"},
		{string(AppendError(nil, KindClientError, "bad data chunk")), "CLIENT_ERROR bad data chunk\r\n"},
		{string(AppendError(nil, KindServerError, "backend 10.0.0.1:11211:\r\nEND")), "SERVER_ERROR backend 10.0.0.1:11211:  END\r\n"},
		{string(AppendEnd([]byte("x"))), "xEND\r\n"},
		{string(AppendOK(nil)), "OK\r\n"},
		{string(AppendVersion(nil, "cacheproxy 0.1")), "VERSION cacheproxy 0.1\r\n"},
		{string(AppendMetaNoop(nil)), "MN\r\n"},
		{string(AppendStat(nil, "version", "0.1")), "STAT version 0.1\r\n"},
		{string(AppendStatUint(nil, "curr_connections", 12)), "STAT curr_connections 12\r\n"},
		// The ElastiCache documentation's own example: the length counts
		// both "\n"-terminated lines.
		{string(AppendConfigCluster(nil, 12, []ClusterNode{
			{"myCluster.pc4ldq.0001.use1.cache.amazonaws.com", "10.82.235.120", 11211},
			{"myCluster.pc4ldq.0002.use1.cache.amazonaws.com", "10.80.249.27", 11211},
		})), "CONFIG cluster 0 136\r\n12\n" +
			"myCluster.pc4ldq.0001.use1.cache.amazonaws.com|10.82.235.120|11211 " +
			"myCluster.pc4ldq.0002.use1.cache.amazonaws.com|10.80.249.27|11211\n\r\nEND\r\n"},
		{string(AppendConfigCluster(nil, 1, []ClusterNode{{"localhost", "127.0.0.1", 22122}})),
			"CONFIG cluster 0 28\r\n1\nlocalhost|127.0.0.1|22122\n\r\nEND\r\n"},
		{string(AppendClusterValue(nil, 1, []ClusterNode{{"localhost", "127.0.0.1", 22122}})),
			"VALUE AmazonElastiCache:cluster 0 28\r\n1\nlocalhost|127.0.0.1|22122\n\r\nEND\r\n"},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got %q; want %q", c.got, c.want)
		}
	}
}

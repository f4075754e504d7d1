package testserver

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cacheproxy/cacheproxy/internal/respclient"
)

// ClusterTimeout bounds how long a Redis Cluster may take to form (every
// node saying cluster_state:ok and knowing every other) or to settle after
// a change.
const ClusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of redis-server processes on loopback.
type Cluster struct {
	// Nodes are the cluster's processes, in creation order: the first
	// masters are the masters redis-cli --cluster create chose, the rest
	// their replicas (until a failover).
	Nodes []*Process
	t     testing.TB
	args  []string
}

// RedisCluster starts masters*(1+replicas) redis-servers in cluster mode
// (cluster-node-timeout 1000, repl-ping-replica-period 1, each with its
// own config file and a bus port of its own), joins them with `redis-cli --cluster create
// --cluster-replicas replicas --cluster-yes`, and waits until every node
// says cluster_state:ok and knows all the others. Every process is stopped
// in cleanup. Extra args are passed to each redis-server.
func RedisCluster(t testing.TB, masters, replicas int, args ...string) *Cluster {
	t.Helper()
	cli := Require(t, "redis-cli")
	n := masters * (1 + replicas)
	c := &Cluster{t: t, args: args}
	for range n {
		c.Nodes = append(c.Nodes, c.start())
	}
	create := []string{"--cluster", "create"}
	for _, p := range c.Nodes {
		create = append(create, p.Addr)
	}
	create = append(create, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), ClusterTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(create, " "), err, out)
	}
	c.WaitOK(c.Nodes...)
	// Roles settle after the slots: wait until every node sees the
	// masters with their slots and every replica as one.
	WaitFor(t, ClusterTimeout, "every node agreeing on the roles", func() error {
		for _, p := range c.Nodes {
			m, r, err := roles(p.Addr)
			if err != nil {
				return err
			}
			if m != masters || r != masters*replicas {
				return fmt.Errorf("%s sees %d masters with slots and %d replicas", p.Addr, m, r)
			}
		}
		return nil
	})
	return c
}

// roles counts the masters with slots and the replicas the node at addr
// sees.
func roles(addr string) (masters, replicas int, err error) {
	nodes, err := nodesOf(addr)
	if err != nil {
		return 0, 0, err
	}
	for _, n := range nodes {
		switch {
		case n.IsMaster() && len(n.Slots) > 0:
			masters++
		case slices.Contains(n.Flags, "slave"):
			replicas++
		}
	}
	return masters, replicas, nil
}

// start starts one node in cluster mode, not yet part of any cluster.
func (c *Cluster) start() *Process {
	c.t.Helper()
	a := append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "1000", "--cluster-port", strconv.Itoa(FreePort(c.t)),
		// A replica counts as loading (CLUSTER SHARDS health) until its
		// replication offset moves: ping it every second, not 10.
		"--repl-ping-replica-period", "1"}, c.args...)
	return Redis(c.t, a...)
}

// AddMaster starts one more node, joins it to the cluster with `redis-cli
// --cluster add-node` (a master owning no slots), and waits until every
// node knows it and says cluster_state:ok.
func (c *Cluster) AddMaster() *Process {
	c.t.Helper()
	cli := Require(c.t, "redis-cli")
	p := c.start()
	ctx, cancel := context.WithTimeout(context.Background(), ClusterTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, "--cluster", "add-node", p.Addr, c.Nodes[0].Addr).CombinedOutput(); err != nil {
		c.t.Fatalf("redis-cli --cluster add-node: %v\n%s", err, out)
	}
	c.Nodes = append(c.Nodes, p)
	WaitFor(c.t, ClusterTimeout, "every node knowing the new one", func() error {
		for _, n := range c.Nodes {
			v, err := Do(n.Addr, "CLUSTER", "INFO")
			if err != nil {
				return err
			}
			info, _ := v.(string)
			if k := infoField(info, "cluster_known_nodes"); k != len(c.Nodes) || !strings.Contains(info, "cluster_state:ok") {
				return fmt.Errorf("%s: %q", n.Addr, info)
			}
		}
		return nil
	})
	return p
}

// Do sends one command to the node at addr and returns its reply.
func Do(addr string, args ...string) (any, error) {
	c, err := respclient.Dial(context.Background(), addr, "", "", 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Do(args...)
}

// WaitOK waits until every node in nodes says cluster_state:ok, has all
// 16384 slots ok and knows as many nodes as the first of them does once
// they all agree.
func (c *Cluster) WaitOK(nodes ...*Process) {
	c.t.Helper()
	WaitFor(c.t, ClusterTimeout, "cluster_state:ok on every node", func() error {
		known := -1
		for _, p := range nodes {
			v, err := Do(p.Addr, "CLUSTER", "INFO")
			if err != nil {
				return err
			}
			info, _ := v.(string)
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				return fmt.Errorf("%s: %q", p.Addr, info)
			}
			k := infoField(info, "cluster_known_nodes")
			if known >= 0 && k != known {
				return fmt.Errorf("%s knows %d nodes, another %d", p.Addr, k, known)
			}
			known = k
		}
		return nil
	})
}

func infoField(info, name string) int {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return -1
}

// ClusterNode is one line of CLUSTER NODES.
type ClusterNode struct {
	ID, Addr, Master string // Master: the master's ID ("-" for a master)
	Flags            []string
	Slots            []string // "0-5460", "[93->-id]", ...
}

// IsMaster reports whether the node says it is a master.
func (n ClusterNode) IsMaster() bool { return slices.Contains(n.Flags, "master") }

// NodesOf returns CLUSTER NODES as the node at addr sees it.
func (c *Cluster) NodesOf(addr string) []ClusterNode {
	c.t.Helper()
	nodes, err := nodesOf(addr)
	if err != nil {
		c.t.Fatalf("%v", err)
	}
	return nodes
}

func nodesOf(addr string) ([]ClusterNode, error) {
	v, err := Do(addr, "CLUSTER", "NODES")
	if err != nil {
		return nil, fmt.Errorf("CLUSTER NODES on %s: %w", addr, err)
	}
	s, _ := v.(string)
	var out []ClusterNode
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		out = append(out, ClusterNode{ID: f[0], Addr: addr, Flags: strings.Split(f[2], ","), Master: f[3], Slots: f[8:]})
	}
	return out, nil
}

// Masters returns the masters owning slots as the node at addr sees them
// (failed ones left out), in address order.
func (c *Cluster) Masters(addr string) []ClusterNode {
	c.t.Helper()
	var out []ClusterNode
	for _, n := range c.NodesOf(addr) {
		if n.IsMaster() && len(n.Slots) > 0 && !slices.Contains(n.Flags, "fail") {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b ClusterNode) int { return strings.Compare(a.Addr, b.Addr) })
	return out
}

// Node returns the process listening at addr.
func (c *Cluster) Node(addr string) *Process {
	c.t.Helper()
	for _, p := range c.Nodes {
		if p.Addr == addr {
			return p
		}
	}
	c.t.Fatalf("no cluster node at %s", addr)
	return nil
}

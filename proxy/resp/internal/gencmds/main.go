// Command gencmds writes proxy/resp/commands_gen.go from a real redis-server's
// COMMAND output: every command and subcommand with its arity, flags, legacy
// key triple, key specs and the raw COMMAND INFO entry.
//
// Usage (from proxy/resp, as go:generate runs it):
//
//	go run ./internal/gencmds [-addr 127.0.0.1:6379] [-out commands_gen.go]
//
// Without -addr it starts redis-server itself on a free loopback port and
// stops it before exiting.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"log"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "", "redis-server address; empty starts one")
	out := flag.String("out", "commands_gen.go", "output file")
	flag.Parse()
	if err := run(*addr, *out); err != nil {
		log.Fatal(err)
	}
}

func run(addr, out string) error {
	if addr == "" {
		a, stop, err := startRedis()
		if err != nil {
			return err
		}
		defer stop()
		addr = a
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	version, err := serverVersion(c)
	if err != nil {
		return err
	}
	raw, err := roundTrip(c, "COMMAND")
	if err != nil {
		return err
	}
	top, _, err := parse(raw, 0)
	if err != nil {
		return err
	}
	arr, ok := top.v.([]value)
	if !ok {
		return errors.New("COMMAND reply is not an array")
	}
	var cmds []*command
	for _, e := range arr {
		cmd, err := convert(raw, e)
		if err != nil {
			return err
		}
		cmds = append(cmds, cmd)
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	src, err := render(version, cmds)
	if err != nil {
		return err
	}
	return os.WriteFile(out, src, 0o644)
}

// startRedis starts redis-server on a free loopback port and waits until it
// accepts connections (bounded).
func startRedis() (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "gencmds")
	if err != nil {
		return "", nil, fmt.Errorf("temp dir: %w", err)
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start redis-server: %w", err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return addr, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server not ready on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func serverVersion(c net.Conn) (string, error) {
	raw, err := roundTrip(c, "INFO", "server")
	if err != nil {
		return "", err
	}
	v, _, err := parse(raw, 0)
	if err != nil {
		return "", err
	}
	s, _ := v.v.(string)
	for _, line := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(line, "redis_version:"); ok {
			return v, nil
		}
	}
	return "", errors.New("no redis_version in INFO server")
}

// roundTrip sends one command and reads until one complete reply arrived.
func roundTrip(c net.Conn, args ...string) ([]byte, error) {
	var b []byte
	b = fmt.Appendf(b, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write(b); err != nil {
		return nil, fmt.Errorf("write %s: %w", args[0], err)
	}
	var buf []byte
	chunk := make([]byte, 64<<10)
	for {
		n, err := c.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if _, _, perr := parse(buf, 0); perr == nil {
			return buf, nil
		} else if !errors.Is(perr, errShort) {
			return nil, perr
		}
		if err != nil {
			return nil, fmt.Errorf("read %s reply: %w", args[0], err)
		}
	}
}

var errShort = errors.New("short reply")

// value is a parsed reply: string (simple or bulk), int64, []value or nil,
// with the byte range it was parsed from.
type value struct {
	v          any
	start, end int
}

func parse(b []byte, pos int) (value, int, error) {
	start := pos
	i := bytes.Index(b[pos:], []byte("\r\n"))
	if i < 0 {
		return value{}, 0, errShort
	}
	line := string(b[pos+1 : pos+i])
	next := pos + i + 2
	switch b[pos] {
	case '+':
		return value{line, start, next}, next, nil
	case '-':
		return value{}, 0, fmt.Errorf("server error: %s", line)
	case ':':
		n, err := strconv.ParseInt(line, 10, 64)
		return value{n, start, next}, next, err
	case '$':
		n, err := strconv.Atoi(line)
		if err != nil {
			return value{}, 0, err
		}
		if n < 0 {
			return value{nil, start, next}, next, nil
		}
		if len(b) < next+n+2 {
			return value{}, 0, errShort
		}
		return value{string(b[next : next+n]), start, next + n + 2}, next + n + 2, nil
	case '*':
		n, err := strconv.Atoi(line)
		if err != nil {
			return value{}, 0, err
		}
		if n < 0 {
			return value{nil, start, next}, next, nil
		}
		arr := make([]value, 0, n)
		for k := 0; k < n; k++ {
			var e value
			e, next, err = parse(b, next)
			if err != nil {
				return value{}, 0, err
			}
			arr = append(arr, e)
		}
		return value{arr, start, next}, next, nil
	}
	return value{}, 0, fmt.Errorf("unexpected reply type %q", b[pos])
}

type keySpec struct {
	flags                           []string
	bsType                          string
	index, startFrom                int
	keyword                         string
	fkType                          string
	lastKey, keyStep, limit         int
	keyNumIdx, firstKey, numKeyStep int
}

type command struct {
	name              string
	arity             int
	flags             []string
	first, last, step int
	acl               []string
	specs             []keySpec
	subs              []*command
	info              string
}

func strs(v value) []string {
	arr, _ := v.v.([]value)
	var out []string
	for _, e := range arr {
		s, _ := e.v.(string)
		out = append(out, s)
	}
	return out
}

func num(v value) int {
	n, _ := v.v.(int64)
	return int(n)
}

// fields turns a RESP2 flattened map into a lookup.
func fields(v value) map[string]value {
	arr, _ := v.v.([]value)
	m := map[string]value{}
	for i := 0; i+1 < len(arr); i += 2 {
		k, _ := arr[i].v.(string)
		m[k] = arr[i+1]
	}
	return m
}

func convert(raw []byte, v value) (*command, error) {
	e, ok := v.v.([]value)
	if !ok || len(e) < 10 {
		return nil, fmt.Errorf("COMMAND entry with %d fields, want 10", len(e))
	}
	c := &command{
		name:  e[0].v.(string),
		arity: num(e[1]),
		flags: strs(e[2]),
		first: num(e[3]), last: num(e[4]), step: num(e[5]),
		acl:  strs(e[6]),
		info: string(raw[v.start:v.end]),
	}
	specs, _ := e[8].v.([]value)
	for _, s := range specs {
		f := fields(s)
		ks := keySpec{flags: strs(f["flags"])}
		bs := fields(f["begin_search"])
		ks.bsType, _ = bs["type"].v.(string)
		bspec := fields(bs["spec"])
		switch ks.bsType {
		case "index":
			ks.index = num(bspec["index"])
		case "keyword":
			ks.keyword, _ = bspec["keyword"].v.(string)
			ks.startFrom = num(bspec["startfrom"])
		case "unknown":
		default:
			return nil, fmt.Errorf("%s: begin_search type %q", c.name, ks.bsType)
		}
		fk := fields(f["find_keys"])
		ks.fkType, _ = fk["type"].v.(string)
		fspec := fields(fk["spec"])
		switch ks.fkType {
		case "range":
			ks.lastKey, ks.keyStep, ks.limit = num(fspec["lastkey"]), num(fspec["keystep"]), num(fspec["limit"])
		case "keynum":
			ks.keyNumIdx, ks.firstKey, ks.numKeyStep = num(fspec["keynumidx"]), num(fspec["firstkey"]), num(fspec["keystep"])
		case "unknown":
		default:
			return nil, fmt.Errorf("%s: find_keys type %q", c.name, ks.fkType)
		}
		c.specs = append(c.specs, ks)
	}
	subs, _ := e[9].v.([]value)
	for _, s := range subs {
		sc, err := convert(raw, s)
		if err != nil {
			return nil, err
		}
		c.subs = append(c.subs, sc)
	}
	sort.Slice(c.subs, func(i, j int) bool { return c.subs[i].name < c.subs[j].name })
	if len(c.subs) > 0 {
		// Redis lists subcommands in its dictionary's randomly seeded order;
		// sort them so the generated file is stable.
		info := string(raw[v.start:e[9].start]) + fmt.Sprintf("*%d\r\n", len(c.subs))
		for _, s := range c.subs {
			info += s.info
		}
		c.info = info
	}
	return c, nil
}

var flagNames = map[string]string{
	"write": "FlagWrite", "readonly": "FlagReadonly", "denyoom": "FlagDenyOOM", "module": "FlagModule",
	"admin": "FlagAdmin", "pubsub": "FlagPubSub", "noscript": "FlagNoScript", "blocking": "FlagBlocking",
	"loading": "FlagLoading", "stale": "FlagStale", "skip_monitor": "FlagSkipMonitor",
	"skip_slowlog": "FlagSkipSlowlog", "asking": "FlagAsking", "fast": "FlagFast", "no_auth": "FlagNoAuth",
	"may_replicate": "FlagMayReplicate", "no_mandatory_keys": "FlagNoMandatoryKeys",
	"no_async_loading": "FlagNoAsyncLoading", "no_multi": "FlagNoMulti", "movablekeys": "FlagMovableKeys",
	"allow_busy": "FlagAllowBusy",
}

var specFlagNames = map[string]string{
	"RO": "KeyRO", "RW": "KeyRW", "OW": "KeyOW", "RM": "KeyRM", "access": "KeyAccess", "update": "KeyUpdate",
	"insert": "KeyInsert", "delete": "KeyDelete", "not_key": "KeyNotKey", "incomplete": "KeyIncomplete",
	"variable_flags": "KeyVariableFlags",
}

func bits(names []string, table map[string]string, what string) (string, error) {
	if len(names) == 0 {
		return "0", nil
	}
	var out []string
	for _, n := range names {
		c, ok := table[n]
		if !ok {
			return "", fmt.Errorf("unknown %s flag %q: add it to gencmds and the package", what, n)
		}
		out = append(out, c)
	}
	return strings.Join(out, " | "), nil
}

func render(version string, cmds []*command) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by gencmds from redis-server %s COMMAND output; DO NOT EDIT.\n\npackage resp\n\n", version)
	fmt.Fprintf(&b, "// generatedVersion is the redis-server version the table was read from.\nconst generatedVersion = %q\n\n", version)
	b.WriteString("// generated returns a fresh copy of the command table as redis-server reported it,\n// top-level commands sorted by name, subcommands in Sub.\nfunc generated() []*Command {\n\treturn []*Command{\n")
	for _, c := range cmds {
		if err := renderCmd(&b, c); err != nil {
			return nil, err
		}
	}
	b.WriteString("\t}\n}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("gofmt generated code: %w", err)
	}
	return src, nil
}

func renderCmd(b *bytes.Buffer, c *command) error {
	fl, err := bits(c.flags, flagNames, "command")
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	fmt.Fprintf(b, "{Name: %q, Arity: %d, Flags: %s, FirstKey: %d, LastKey: %d, Step: %d,\n",
		c.name, c.arity, fl, c.first, c.last, c.step)
	if len(c.acl) > 0 {
		fmt.Fprintf(b, "ACL: %q,\n", strings.Join(c.acl, " "))
	}
	if len(c.specs) > 0 {
		b.WriteString("KeySpecs: []KeySpec{\n")
		for _, s := range c.specs {
			sf, err := bits(s.flags, specFlagNames, "key spec")
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			fmt.Fprintf(b, "{Flags: %s, ", sf)
			switch s.bsType {
			case "index":
				fmt.Fprintf(b, "Begin: BeginIndex, Index: %d, ", s.index)
			case "keyword":
				fmt.Fprintf(b, "Begin: BeginKeyword, Keyword: %q, StartFrom: %d, ", s.keyword, s.startFrom)
			default:
				b.WriteString("Begin: BeginUnknown, ")
			}
			switch s.fkType {
			case "range":
				fmt.Fprintf(b, "Find: FindRange, LastKey: %d, KeyStep: %d, Limit: %d},\n", s.lastKey, s.keyStep, s.limit)
			case "keynum":
				fmt.Fprintf(b, "Find: FindKeynum, KeyNumIdx: %d, FirstKey: %d, KeyStep: %d},\n", s.keyNumIdx, s.firstKey, s.numKeyStep)
			default:
				b.WriteString("Find: FindUnknown},\n")
			}
		}
		b.WriteString("},\n")
	}
	if len(c.subs) > 0 {
		b.WriteString("Sub: []*Command{\n")
		for _, s := range c.subs {
			if err := renderCmd(b, s); err != nil {
				return err
			}
		}
		b.WriteString("},\n")
	}
	fmt.Fprintf(b, "info: %q},\n", c.info)
	return nil
}

// Command cacheproxy is a sharding memcached and Redis proxy, a drop-in for
// twemproxy's nutcracker where the flags overlap.
//
//	cacheproxy -c config.yaml           serve
//	cacheproxy -t -c nutcracker.yml     check a configuration and summarise it
//	cacheproxy --route KEY -c FILE      print where KEY goes in every pool
//
// Exit status: 0 on success (a configuration with only warnings, such as a
// server name that does not resolve, is a success, as with nutcracker -t), 1
// for a bad configuration or a failure while serving, 2 for bad command-line
// usage.
//
// SIGTERM and SIGINT stop the proxy. SIGHUP reopens the -o log file (for
// logrotate's postrotate, as nutcracker does) and reloads the configuration
// file; so do POST /reload on the admin listener and, with --watch, a change
// to the file (docs/reloading.md). A file that does not load or cannot be
// applied live changes nothing: the old configuration keeps serving. SIGTTIN
// and SIGTTOU make the log one level more and less verbose (error, warn,
// info, debug), as in nutcracker.
//
// Given a nutcracker.yml and no stats settings, cacheproxy serves the JSON
// stats on 127.0.0.1:22222 (nutcracker serves 0.0.0.0:22222) and logs so;
// -s 0 turns them off. If that port is taken, it serves without stats and
// logs an error; an address given with -s/-a that cannot be bound is fatal.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/cacheproxy/cacheproxy/config"
	"github.com/cacheproxy/cacheproxy/proxy"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, nil))
}

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// Defaults for the stats listener when only one of -s and -a is given.
const (
	defaultStatsAddr = "127.0.0.1" // twemproxy's is 0.0.0.0
	defaultStatsPort = 22222       // twemproxy's
)

// options are the parsed command line.
type options struct {
	confFile  string
	testConf  bool
	statsPort int
	statsAddr string
	verbose   int
	version   bool
	admin     string
	route     string
	routeSet  bool
	logFile   string
	pidFile   string
	daemonize bool
	statsSet  bool
	adminSet  bool
	watch     bool
}

func parseFlags(args []string, stdout, stderr io.Writer) (options, int, bool) {
	var o options
	fs := pflag.NewFlagSet("cacheproxy", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.StringVarP(&o.confFile, "conf-file", "c", "config.yaml", "configuration file (nutcracker.yml or the native shape)")
	fs.BoolVarP(&o.testConf, "test-conf", "t", false, "check the configuration, print its problems or a summary, and exit")
	fs.IntVarP(&o.statsPort, "stats-port", "s", defaultStatsPort, "serve twemproxy-compatible JSON stats on this TCP port; 0 turns them off (a nutcracker.yml gets them on 127.0.0.1:22222 by default)")
	fs.StringVarP(&o.statsAddr, "stats-addr", "a", defaultStatsAddr, "address for the JSON stats (twemproxy's default is 0.0.0.0)")
	fs.IntP("stats-interval", "i", 30000, "accepted for twemproxy compatibility; stats are live at each connection")
	fs.StringVarP(&o.logFile, "output", "o", "", "write the log to this file instead of stderr (as nutcracker -o); SIGHUP reopens it")
	fs.StringVarP(&o.pidFile, "pid-file", "p", "", "write the process id to this file (as nutcracker -p)")
	fs.IntP("mbuf-size", "m", 16384, "accepted for twemproxy compatibility; buffers are sized per connection")
	fs.BoolVarP(&o.daemonize, "daemonize", "d", false, "not supported: run under a supervisor (systemd, a container) instead")
	fs.IntVarP(&o.verbose, "verbose", "v", 5, "log level, twemproxy's scale: <=3 errors, 4 warnings, 5-6 info, >=7 debug; SIGTTIN/SIGTTOU step it up/down")
	fs.BoolVarP(&o.version, "version", "V", false, "print the version and exit")
	fs.StringVar(&o.admin, "admin", "", "admin HTTP address (/metrics, /healthz, /readyz, /hotkeys, POST /reload; /debug/pprof/ with admin.pprof); overrides admin.listen")
	fs.StringVar(&o.route, "route", "", "print the server KEY goes to in every pool, then exit")
	fs.BoolVar(&o.watch, "watch", false, "reload the configuration file when it changes (follows editors' rename-over and a Kubernetes ConfigMap's symlink swap)")
	usage := func(w io.Writer) {
		fs.SetOutput(w)
		fmt.Fprintf(w, "Usage: cacheproxy [-c FILE] [-t] [--route KEY] [-s PORT] [-a ADDR] [-o FILE] [-p FILE] [-v N] [--admin ADDR] [--watch] [-V]\n\nOptions:\n")
		fs.PrintDefaults()
		fmt.Fprintf(w, "\nSignals: SIGTERM and SIGINT stop; SIGHUP reopens the -o file and reloads the configuration file; SIGTTIN and SIGTTOU raise and lower the log level.\n"+
			"Reloading: SIGHUP, POST /reload on the admin listener, or --watch. A file that does not load, or cannot be applied live, changes nothing:\n"+
			"the old configuration keeps serving and the reason is logged (as -t prints it). Flags given here override every reloaded file too. docs/reloading.md.\n"+
			"Migrating from twemproxy: docs/migrating-from-twemproxy.md.\n")
		fs.SetOutput(stderr)
	}
	// Help that was asked for goes to stdout (pflag calls Usage only for
	// -h and --help); usage after a mistake goes to stderr.
	fs.Usage = func() { usage(stdout) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return o, exitOK, false
		}
		fmt.Fprintf(stderr, "cacheproxy: %v\n", err)
		usage(stderr)
		return o, exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cacheproxy: unexpected argument %q\n", fs.Arg(0))
		usage(stderr)
		return o, exitUsage, false
	}
	// Settings may also come from the environment (CACHEPROXY_CONF_FILE,
	// CACHEPROXY_ADMIN, CACHEPROXY_STATS_PORT, CACHEPROXY_STATS_ADDR,
	// CACHEPROXY_VERBOSE, CACHEPROXY_WATCH), for containers and sidecars: a
	// flag given on the command line wins, then the environment, then the
	// file and defaults.
	// viper does this merge; the file itself is read by package config,
	// which keeps pool names' case (viper lowercases map keys).
	v := viper.New()
	v.SetEnvPrefix("cacheproxy")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(fs); err != nil {
		fmt.Fprintf(stderr, "cacheproxy: %v\n", err)
		return o, exitUsage, false
	}
	o.confFile = v.GetString("conf-file")
	o.admin = v.GetString("admin")
	o.statsAddr = v.GetString("stats-addr")
	o.statsPort = v.GetInt("stats-port")
	o.verbose = v.GetInt("verbose")
	o.watch = v.GetBool("watch")
	o.routeSet = fs.Changed("route")
	o.statsSet = v.IsSet("stats-port") || v.IsSet("stats-addr")
	o.adminSet = v.IsSet("admin")
	if o.daemonize {
		fmt.Fprintln(stderr, "cacheproxy: -d (daemonize) is not supported: run cacheproxy in the foreground under a supervisor (deploy/systemd/cacheproxy.service)")
		return o, exitUsage, false
	}
	if o.testConf && o.routeSet {
		fmt.Fprintln(stderr, "cacheproxy: -t and --route do not go together")
		return o, exitUsage, false
	}
	return o, exitOK, true
}

// run is main without the process: it parses args, writes to stdout and
// stderr, and returns the exit code. r looks up the servers' host names for
// -t and at start; nil means net.DefaultResolver.
func run(args []string, stdout, stderr io.Writer, r config.Resolver) int {
	o, code, ok := parseFlags(args, stdout, stderr)
	if !ok {
		return code
	}
	if o.version {
		fmt.Fprintf(stdout, "cacheproxy %s\n", version())
		return exitOK
	}

	// -t, the start and every reload load the file this one way.
	l, err := loadConfig(o)
	if l != nil {
		for _, w := range l.warns {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		if o.testConf {
			fmt.Fprintf(stderr, "cacheproxy: configuration file '%s' syntax is invalid\n", o.confFile)
		}
		return exitFailed
	}
	cfg, statsDefault := l.cfg, l.statsDefault

	switch {
	case o.testConf:
		// A name that does not resolve is a warning, and -t still exits 0
		// (nutcracker -t does not look names up at all).
		for _, w := range checkHosts(cfg, r) {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		fmt.Fprintf(stdout, "cacheproxy: configuration file '%s' syntax is ok\n", o.confFile)
		summarize(stdout, cfg)
		return exitOK
	case o.routeSet:
		if err := printRoute(stdout, cfg, o.route); err != nil {
			fmt.Fprintln(stderr, err)
			return exitFailed
		}
		return exitOK
	}

	logOut := stderr
	var lf *logFile
	if o.logFile != "" {
		lf, err = openLogFile(o.logFile)
		if err != nil {
			fmt.Fprintf(stderr, "cacheproxy: %v\n", err)
			return exitFailed
		}
		defer lf.Close()
		logOut = lf
	}
	if o.pidFile != "" {
		if err := os.WriteFile(o.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			fmt.Fprintf(stderr, "cacheproxy: pid file: %v\n", err)
			return exitFailed
		}
		defer os.Remove(o.pidFile)
	}
	level := new(slog.LevelVar)
	level.Set(logLevel(o.verbose))
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	reloads := newReloadManager(o, l, log, r)
	stopSignals := watchSignals(ctx, log, lf, level, reloads)
	defer stopSignals()
	log.Info("starting", "version", version(), "config", cfg.File, "pools", len(cfg.Pools), "hash", l.hash)
	var watch *fileWatcher
	if o.watch {
		if watch, err = newFileWatcher(o.confFile, watchDebounce, log); err != nil {
			log.Error("stopped", "err", err)
			return exitFailed
		}
		log.Info("watching the configuration file", "file", o.confFile)
	}
	if statsDefault {
		log.Info("stats: a nutcracker.yml and no stats settings, so twemproxy JSON stats are served as nutcracker serves them, "+
			"but on 127.0.0.1 (nutcracker binds 0.0.0.0); -s PORT and -a ADDR change the address, -s 0 turns stats off",
			"addr", cfg.Stats.Listen)
		// Only the implicit default gives way: a stats address that was
		// asked for and cannot be bound stops the start.
		if err := probeListen(cfg.Stats.Listen); err != nil {
			log.Error("stats: not served: the default stats address is taken (is nutcracker still running?); "+
				"choose another with -s PORT, or turn stats off with -s 0", "addr", cfg.Stats.Listen, "err", err)
			cfg.Stats.Listen = ""
			reloads.mu.Lock()
			reloads.statsDropped = true // and so in every reloaded file
			reloads.mu.Unlock()
		}
	}
	for _, w := range checkHosts(cfg, r) {
		log.Warn("configuration", "warning", w.String())
	}
	logFDLimit(log, cfg)
	if err := serve(ctx, cfg, log, serveOptions{reload: reloads, hash: l.hash, watch: watch}); err != nil {
		if statsDefault && errors.Is(err, syscall.EADDRINUSE) {
			// Taken between probeListen and the bind.
			log.Error("stopped", "err", err, "hint", "the default stats address "+cfg.Stats.Listen+
				" is taken (is nutcracker still running?): choose another with -s PORT, or turn stats off with -s 0")
			return exitFailed
		}
		log.Error("stopped", "err", err)
		return exitFailed
	}
	log.Info("stopped")
	return exitOK
}

// applyFlags lets the command line override the file's listeners, then
// validates again (an override may collide with a pool's listen address).
// A stats port of 0 turns stats off. A nutcracker.yml, which has no stats
// section, gets nutcracker's stats port on 127.0.0.1 when no stats flag or
// variable is set; statsDefault reports that.
func applyFlags(cfg *config.Config, o options) (statsDefault bool, err error) {
	if o.adminSet {
		cfg.Admin.Listen = o.admin
	}
	switch {
	case o.statsSet && o.statsPort == 0:
		cfg.Stats.Listen = ""
	case o.statsSet:
		cfg.Stats.Listen = net.JoinHostPort(o.statsAddr, strconv.Itoa(o.statsPort))
	case cfg.Nutcracker:
		cfg.Stats.Listen = net.JoinHostPort(defaultStatsAddr, strconv.Itoa(defaultStatsPort))
		statsDefault = true
	}
	if o.adminSet || o.statsSet || statsDefault {
		if err := cfg.Validate(); err != nil {
			if statsDefault && !o.adminSet {
				return false, fmt.Errorf("with the default stats listener %s (nutcracker's port; -s changes it, -s 0 turns it off):\n%w", cfg.Stats.Listen, err)
			}
			return false, fmt.Errorf("with the command-line listeners:\n%w", err)
		}
	}
	return statsDefault, nil
}

// probeListen reports whether a TCP listener can be opened on addr now.
func probeListen(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// checkHosts looks up every host name in cfg within
// config.DefaultHostCheckTimeout and returns a warning for each that does
// not resolve.
func checkHosts(cfg *config.Config, r config.Resolver) []config.Warning {
	ctx, cancel := context.WithTimeout(context.Background(), config.DefaultHostCheckTimeout)
	defer cancel()
	return cfg.CheckHosts(ctx, r)
}

// logFDLimit raises the file-descriptor limit and logs it, with the backend
// connections the configuration may open. The proxy logs the client limit
// it derives from it.
func logFDLimit(log *slog.Logger, cfg *config.Config) {
	before, soft, hard, err := raiseFDLimit()
	if err != nil {
		log.Warn("file-descriptor limit not raised", "soft_limit", before, "hard_limit", hard, "err", err)
	}
	loops := proxy.DefaultLoops() // the proxy's number of event loops
	log.Info("file-descriptor limit", "soft_limit_at_start", before, "soft_limit", soft, "hard_limit", hard,
		"backend_connections", cfg.BackendConns(loops))
}

// logLevel maps twemproxy's -v scale (0 emergencies only .. 11 everything,
// default 5) onto slog's levels.
func logLevel(v int) slog.Level {
	switch {
	case v <= 3:
		return slog.LevelError
	case v == 4:
		return slog.LevelWarn
	case v <= 6:
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// version is the module version and VCS revision the binary was built from.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := proxy.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + dirty
	}
	return v
}

// summarize prints what -t reports for a good configuration: each pool's
// protocol, listener, distribution, hash and servers.
func summarize(w io.Writer, cfg *config.Config) {
	if cfg.Admin.Listen != "" {
		fmt.Fprintf(w, "admin %s\n", cfg.Admin.Listen)
	}
	if cfg.Stats.Listen != "" {
		fmt.Fprintf(w, "stats %s\n", cfg.Stats.Listen)
	}
	fmt.Fprintf(w, "pools %d\n", len(cfg.Pools))
	for _, p := range cfg.Pools {
		tag := ""
		if p.HashTag != "" {
			tag = fmt.Sprintf(" hash_tag %q", p.HashTag)
		}
		fmt.Fprintf(w, "pool %s: %s listen %s distribution %s hash %s%s servers %d\n",
			p.Name, p.Protocol, p.Listen, p.Distribution, p.Hash, tag, len(p.Servers))
		if p.Discovery.Enabled() {
			fmt.Fprintf(w, "  discovery %s every %v\n", p.Discovery.Endpoint, p.Discovery.Interval)
		}
		for _, s := range p.Servers {
			replicas := ""
			if len(s.Replicas) > 0 {
				replicas = " replicas " + strings.Join(s.ReplicaAddrs(), ",")
			}
			fmt.Fprintf(w, "  server %s addr %s weight %d%s\n", s.Name, addrText(&s), s.Weight, replicas)
		}
	}
}

// printRoute prints, for every pool, the server key goes to: its name and
// address, the key's hash and, for ketama, the continuum point.
func printRoute(w io.Writer, cfg *config.Config, key string) error {
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		if p.Discovery.Enabled() {
			if len(p.Servers) == 0 {
				fmt.Fprintf(w, "pool %s: servers learnt at run time from discovery endpoint %s\n", p.Name, p.Discovery.Endpoint)
				continue
			}
			fmt.Fprintf(w, "pool %s: among the configured servers only (nodes from discovery endpoint %s join at run time)\n",
				p.Name, p.Discovery.Endpoint)
		}
		ring, err := p.Ring()
		if err != nil {
			return err
		}
		r := ring.Route([]byte(key))
		if r.Server < 0 || r.Server >= len(p.Servers) {
			return fmt.Errorf("pool %s: no server for key %q", p.Name, key)
		}
		s := p.Servers[r.Server]
		note := ""
		switch p.Distribution {
		case "random":
			note = " (random: any server, chosen per request)"
		case "ketama":
			note = fmt.Sprintf(" point 0x%08x", r.Point)
		}
		fmt.Fprintf(w, "pool %s: server %s addr %s hash 0x%08x%s\n", p.Name, s.Name, addrText(&s), r.Hash, note)
		printReplicas(w, p, &s)
	}
	return nil
}

// printReplicas prints, for --route, server s's replicas and which copy
// would serve a read of the key under the pool's read_policy.
func printReplicas(w io.Writer, p *config.Pool, s *config.Server) {
	if len(s.Replicas) == 0 {
		return
	}
	names := make([]string, len(s.Replicas))
	for i, r := range s.Replicas {
		names[i] = r.Name
		fmt.Fprintf(w, "  replica %s/%s addr %s\n", s.Name, r.Name, r.Addr)
	}
	reps := "replica " + strings.Join(names, ", ")
	if len(names) > 1 {
		reps = "replicas " + strings.Join(names, ", ") + " (one per client connection)"
	}
	var reads string
	switch p.ReadPolicy {
	case config.ReadReplica:
		reads = reps + "; fails while none is up"
	case config.ReadPreferReplica:
		reads = reps + "; the primary while none is up"
	case config.ReadPreferPrimary:
		reads = "primary; " + reps + " while the primary is down"
	case config.ReadAny:
		reads = "primary or " + reps + ", by client connection"
	default:
		reads = "primary (read_policy primary)"
	}
	fmt.Fprintf(w, "  reads: %s\n", reads)
}

// addrText is a server's address for -t and --route: a Sentinel master's
// is learnt at run time.
func addrText(s *config.Server) string {
	if s.Followed() {
		return "(sentinel master " + s.Name + ")"
	}
	return s.Addr
}

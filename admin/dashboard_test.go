package admin

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cacheproxy/cacheproxy/config"
)

// ourMetrics returns the names of every metric this package defines.
func ourMetrics(t *testing.T) []string {
	t.Helper()
	cfg := &config.Config{Pools: []config.Pool{config.NewPool("p", config.ProtocolMemcache)}}
	cols := []prometheus.Collector{newStatsCollector(&benchSource{}, "v"), newPoller(cfg, DefaultPollInterval, nil), newReloadCollector()}
	ch := make(chan *prometheus.Desc, 256)
	for _, c := range cols {
		c.Describe(ch)
	}
	close(ch)
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	var names []string
	for d := range ch {
		m := re.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no fqName in %s", d)
		}
		names = append(names, m[1])
	}
	slices.Sort(names)
	if len(names) < 40 {
		t.Fatalf("only %d metrics described: %v", len(names), names)
	}
	return names
}

// TestDashboard checks the Grafana dashboard: valid JSON, a pool template
// variable, every cacheproxy metric it queries exists, and a "Hot keys" row
// shows every near_cache_* and hotkey_* metric.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile("../deploy/grafana/cacheproxy.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string `json:"title"`
		Templating struct {
			List []struct {
				Name, Type string
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct{ Name, Type string }) bool { return v.Name == "pool" && v.Type == "query" }) {
		t.Errorf("no pool query variable in templating: %+v", d.Templating.List)
	}
	known := ourMetrics(t)
	ref := regexp.MustCompile(`cacheproxy_[a-z_]+`)
	exprs := 0
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			if !strings.Contains(tg.Expr, `pool=~"$pool"`) {
				t.Errorf("panel %q: query %q ignores the pool variable", p.Title, tg.Expr)
			}
			for _, m := range ref.FindAllString(tg.Expr, -1) {
				base := m
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suf)
				}
				if !slices.Contains(known, base) {
					t.Errorf("panel %q queries %s, which /metrics does not have", p.Title, m)
				}
			}
		}
	}
	if exprs < 20 {
		t.Errorf("only %d queries in the dashboard", exprs)
	}

	// The "Hot keys" row (the panels after it, up to the next row) queries
	// every near-cache and hot-key metric, the seven among them.
	inRow, rows := false, 0
	queried := map[string]bool{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			inRow = p.Title == "Hot keys"
			if inRow {
				rows++
			}
			continue
		}
		if inRow {
			for _, tg := range p.Targets {
				for _, m := range ref.FindAllString(tg.Expr, -1) {
					queried[m] = true
				}
			}
		}
	}
	if rows != 1 {
		t.Fatalf("%d \"Hot keys\" rows in the dashboard, want 1", rows)
	}
	var hot []string
	for _, m := range known {
		if strings.HasPrefix(m, "cacheproxy_near_cache_") || strings.HasPrefix(m, "cacheproxy_hotkey_") {
			hot = append(hot, m)
			if !queried[m] {
				t.Errorf("the Hot keys row does not show %s", m)
			}
		}
	}
	for _, m := range []string{"cacheproxy_near_cache_hits_total", "cacheproxy_near_cache_misses_total",
		"cacheproxy_near_cache_fills_total", "cacheproxy_near_cache_invalidations_total", "cacheproxy_near_cache_bytes",
		"cacheproxy_hotkey_promotions_total", "cacheproxy_hotkey_demotions_total"} {
		if !slices.Contains(hot, m) {
			t.Errorf("/metrics has no %s", m)
		}
	}
}

// TestDocsListEveryMetric checks docs/observability.md has a table row for
// every metric, and no row for one that does not exist.
func TestDocsListEveryMetric(t *testing.T) {
	b, err := os.ReadFile("../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	known := ourMetrics(t)
	row := regexp.MustCompile("(?m)^\\| `(cacheproxy_[a-z_]+)` \\|")
	var documented []string
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		documented = append(documented, m[1])
	}
	for _, k := range known {
		if !slices.Contains(documented, k) {
			t.Errorf("%s is not documented in docs/observability.md", k)
		}
	}
	for _, d := range documented {
		if !slices.Contains(known, d) {
			t.Errorf("docs/observability.md documents %s, which /metrics does not have", d)
		}
	}
}

package admin

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reloadHandler serves POST /reload: it calls Options.Reload and answers
// 200 with its one-line summary, or the error's status (*ReloadError, else
// 500) with the error's text. Any other method gets 405.
func (s *Server) reloadHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = w.Write([]byte("method " + r.Method + " not allowed: POST /reload reloads the configuration file\n"))
		return
	}
	summary, err := s.opts.Reload(r.Context())
	if err != nil {
		status := http.StatusInternalServerError
		var re *ReloadError
		if errors.As(err, &re) && re.Status != 0 {
			status = re.Status
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(err.Error() + "\n"))
		return
	}
	_, _ = w.Write([]byte(summary + "\n"))
}

// ConfigLoaded records a configuration that is now in use: the
// cacheproxy_config_hash info series becomes hash (the previous one goes)
// and cacheproxy_config_last_reload_success_timestamp_seconds becomes at.
// Call it for the configuration loaded at start too; it counts nothing.
func (s *Server) ConfigLoaded(hash string, at time.Time) {
	s.reload.loaded(hash, at)
}

// CountReload counts one reload in cacheproxy_config_reloads_total, with
// result "ok" or "error".
func (s *Server) CountReload(ok bool) {
	s.reload.count(ok)
}

// reloadCollector exports the configuration's reload figures.
type reloadCollector struct {
	total, lastSuccess, hash *prometheus.Desc

	mu       sync.Mutex
	ok, errs int64
	at       time.Time // last configuration put in use, zero before any
	sum      string    // its hash
}

func newReloadCollector() *reloadCollector {
	return &reloadCollector{
		total: prometheus.NewDesc(namespace+"_config_reloads_total",
			"Configuration reloads (SIGHUP, POST /reload, --watch), by result: ok (applied, or nothing to change) or error (nothing applied).",
			[]string{"result"}, nil),
		lastSuccess: prometheus.NewDesc(namespace+"_config_last_reload_success_timestamp_seconds",
			"Unix time the configuration in use was loaded: at start, then at each successful reload.", nil, nil),
		hash: prometheus.NewDesc(namespace+"_config_hash",
			"Always 1; the hash label is the first 12 hex digits of the SHA-256 of the configuration file in use.",
			[]string{"hash"}, nil),
	}
}

func (c *reloadCollector) loaded(hash string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum, c.at = hash, at
}

func (c *reloadCollector) count(ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.ok++
	} else {
		c.errs++
	}
}

// Describe implements prometheus.Collector.
func (c *reloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.lastSuccess
	ch <- c.hash
}

// Collect implements prometheus.Collector. Both results are always present;
// the timestamp and the hash only once a configuration was recorded.
func (c *reloadCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	ok, errs, at, sum := c.ok, c.errs, c.at, c.sum
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(ok), "ok")
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(errs), "error")
	if !at.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, float64(at.UnixNano())/1e9)
		ch <- prometheus.MustNewConstMetric(c.hash, prometheus.GaugeValue, 1, sum)
	}
}

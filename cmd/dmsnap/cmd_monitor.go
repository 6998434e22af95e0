package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/metrics"
	"github.com/dmsnap/dmsnap/monitor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/urfave/cli/v2"
)

// defaultMonitorListen is where `dmsnap monitor` serves /metrics: the
// loopback only, so that nothing is exposed unless asked for.
const defaultMonitorListen = "127.0.0.1:9817"

// monitorOptions are the arguments of `dmsnap monitor`.
type monitorOptions struct {
	Listen        string
	Interval      time.Duration
	Textfile      string
	Once          bool
	Policy        monitor.Policy
	RemoveInvalid bool
	// ready, if set, receives the bound listen address once serving
	// (tests).
	ready func(addr string)
}

func newMonitorCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:  "monitor",
		Usage: "watch snapshots: auto-extend COWs, alert on invalidation, serve Prometheus metrics",
		Description: "Watches every classic snapshot the kernel has (dmsnap's; LVM2's and anonymous ones\n" +
			"read-only): status polling every --interval for fill and merge progress, device events\n" +
			"for invalidation. A dmsnap snapshot whose usage reaches the auto-extend threshold gets\n" +
			"its COW grown by the percentage from the pool's free extents, like `dmsnap extend` (pool\n" +
			"lock, metadata commit, short suspend of the origin for the reload). A threshold of 100\n" +
			"turns it off. A pool's own policy in the state file (pools.json, key \"autoextend\":\n" +
			"{\"autoextend_threshold\": 70, \"autoextend_percent\": 20}) overrides the flags. With no\n" +
			"room left it logs an ALERT and sets dmsnap_snapshot_autoextend_no_room. Metrics are\n" +
			"served on --listen (/metrics) and, with --textfile DIR, written atomically to\n" +
			"DIR/dmsnap.prom for node_exporter. --once polls once, writes the textfile (or prints the\n" +
			"metrics on stdout) and exits, for cron.\n\n" + exitStatusHelp,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: defaultMonitorListen, Usage: "`ADDR` to serve /metrics on (\"\" for none)"},
			&cli.DurationFlag{Name: "interval", Value: monitor.DefaultInterval, Usage: "status polling period (50ms to 10m)"},
			&cli.StringFlag{Name: "textfile", Usage: "write metrics to `DIR`/dmsnap.prom (node_exporter textfile collector)"},
			&cli.BoolFlag{Name: "once", Usage: "poll once, write the metrics and exit"},
			&cli.IntFlag{Name: "autoextend-threshold", Value: monitor.DefaultThreshold, Usage: "percent (50 to 100, 100 = off) at which a COW is grown"},
			&cli.IntFlag{Name: "autoextend-percent", Value: monitor.DefaultPercent, Usage: "percent of its size (1 to 1000) a COW grows by per step"},
			&cli.BoolFlag{Name: "remove-invalid", Usage: "remove dmsnap snapshots that became invalid or overflowed"},
		},
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) != 0 {
				return usageErrorf("monitor takes no arguments, got %d", len(args))
			}
			return runMonitor(c.Context, gopts, monitorOptions{
				Listen: c.String("listen"), Interval: c.Duration("interval"), Textfile: c.String("textfile"), Once: c.Bool("once"),
				Policy:        monitor.Policy{Threshold: c.Int("autoextend-threshold"), Percent: c.Int("autoextend-percent")},
				RemoveInvalid: c.Bool("remove-invalid"),
			})
		}),
	}
}

// monitorPolicies returns the policy lookup: a pool's own policy from the
// state file, else def. Every pool policy is validated up front.
func monitorPolicies(gopts *globalOptions, def monitor.Policy) (func(string) monitor.Policy, error) {
	st, err := loadState(gopts)
	if err != nil {
		return nil, err
	}
	own := map[string]monitor.Policy{}
	for name, p := range st.Pools {
		if p.Autoextend == nil {
			continue
		}
		if err := p.Autoextend.Validate(); err != nil {
			return nil, fmt.Errorf("state file %s: pool %s: %w", gopts.statePath(), name, err)
		}
		own[name] = *p.Autoextend
	}
	return func(pool string) monitor.Policy {
		if p, ok := own[pool]; ok {
			return p
		}
		return def
	}, nil
}

func runMonitor(ctx context.Context, gopts *globalOptions, opts monitorOptions) error {
	// Validate everything before touching a device or a port.
	if opts.Interval < monitor.MinInterval || opts.Interval > monitor.MaxInterval {
		return usageErrorf("--interval %s: want %s to %s", opts.Interval, monitor.MinInterval, monitor.MaxInterval)
	}
	if err := opts.Policy.Validate(); err != nil {
		return usageError{err}
	}
	policy, err := monitorPolicies(gopts, opts.Policy)
	if err != nil {
		return err
	}
	if opts.Textfile != "" {
		if err := metrics.CheckTextfileDir(opts.Textfile); err != nil {
			return err
		}
	}
	var ln net.Listener
	if !opts.Once && opts.Listen != "" {
		if ln, err = net.Listen("tcp", opts.Listen); err != nil {
			return fmt.Errorf("monitor: listen on %s: %w", opts.Listen, err)
		}
		defer ln.Close()
	}
	k, err := dm.Open()
	if err != nil {
		return err
	}
	defer k.Close()

	logger := log.New(gopts.stderr, "dmsnap monitor: ", log.LstdFlags)
	// One watcher for every device: DM_DEV_ARM_POLL is global.
	var events <-chan struct{}
	if !opts.Once {
		w, err := k.WatchEvents()
		switch {
		case errors.Is(err, dm.ErrNotSupported):
			logger.Printf("no device-mapper events (%v): invalidations are seen at the next poll", err)
		case err != nil:
			return err
		default:
			defer w.Close()
			events = w.C()
		}
	}
	mon := &monitor.PoolActions{Host: gopts.host(), Warn: gopts.warn, Logf: gopts.stepLog()}
	reg := prometheus.NewRegistry()
	var mn *monitor.Monitor
	m := metrics.New(metrics.SourceFunc(func() []metrics.Snapshot { return mn.Snapshots() }))
	cfg := monitor.Config{
		Kernel: k, Events: events, Actions: mon, Policy: policy, RemoveInvalid: opts.RemoveInvalid,
		Interval: opts.Interval, Metrics: m, Logf: logger.Printf,
	}
	// Ingest and replicate note their last success in the state file.
	transfers := func() {
		st, err := loadState(gopts)
		if err != nil {
			m.Error("state")
			logger.Printf("transfers: %v", err)
			return
		}
		for _, t := range st.Transfers {
			m.RecordTransfer(t.Op, t.Pool, t.Origin, t.At, t.Bytes)
		}
	}
	cfg.AfterPoll = func(error) {
		transfers()
		if opts.Textfile != "" {
			if err := metrics.WriteTextfile(opts.Textfile, reg); err != nil {
				m.Error("textfile")
				logger.Printf("%v", err)
			}
		}
	}
	mn = monitor.New(cfg)
	if err := m.Register(reg); err != nil {
		return err
	}

	if opts.Once {
		if err := mn.Poll(ctx); err != nil {
			return err
		}
		transfers()
		if opts.Textfile != "" {
			return metrics.WriteTextfile(opts.Textfile, reg)
		}
		return writeExposition(gopts.stdout, reg)
	}

	var srv *http.Server
	serveErr := make(chan error, 1)
	if ln != nil {
		runtime := prometheus.NewRegistry()
		runtime.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{reg, runtime}, promhttp.HandlerOpts{}))
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			fmt.Fprintln(w, "dmsnap monitor: metrics at /metrics")
		})
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: logger}
		go func() { serveErr <- srv.Serve(ln) }()
		logger.Printf("serving metrics on http://%s/metrics", ln.Addr())
		if opts.ready != nil {
			opts.ready(ln.Addr().String())
		}
	}
	logger.Printf("watching snapshots every %s (auto-extend default: threshold %d%%, +%d%%)", opts.Interval, opts.Policy.Threshold, opts.Policy.Percent)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mn.Run(runCtx) }()
	select {
	case err = <-done:
	case err = <-serveErr:
		cancel()
		<-done
		err = fmt.Errorf("monitor: serve metrics: %w", err)
	}
	if srv != nil {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer scancel()
		err = errors.Join(err, srv.Shutdown(sctx))
	}
	logger.Printf("stopped")
	return err
}

// writeExposition prints g in the Prometheus text format.
func writeExposition(w io.Writer, g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

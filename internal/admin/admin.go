// Package admin is the admin HTTP endpoint of mars-server and node run:
// Prometheus metrics, liveness and readiness probes, JSON status, and the
// Go profiler when asked (-pprof). It is off unless an address is given
// (-admin HOST:PORT).
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/marsmesh/marsmesh/internal/version"
)

// ErrAddress is wrapped by the error Listen and Start return for an
// address they cannot listen on.
var ErrAddress = errors.New("admin endpoint")

// Options configures an admin endpoint.
type Options struct {
	// Addr is "host:port" to listen on (port 0 picks a free one).
	Addr string
	// Collectors are registered on the endpoint's own registry, beside the
	// Go runtime, process and build-info collectors.
	Collectors []prometheus.Collector
	// Register, if set, registers more collectors (e.g. several nodes,
	// each wrapped with its own label).
	Register func(prometheus.Registerer) error
	// Ready reports readiness for /readyz: nil means ready.
	Ready func() error
	// Status is the JSON document of /v1/status.
	Status func() any
	// Routes are extra handlers (path -> handler), e.g. /v1/nodes or /.
	Routes map[string]http.Handler
	// Pprof serves the Go profiler under /debug/pprof/ (off by default:
	// profiles show the program's internals and cost CPU while they run).
	Pprof bool
	// Listener, if set, is the socket to serve on (see Listen), and Addr
	// is only a label; else Start listens on Addr.
	Listener net.Listener
	// Logger receives start-up and error logs. Default slog.Default().
	Logger *slog.Logger
}

// Server is a running admin endpoint.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	wg   sync.WaitGroup
	once sync.Once
	err  error
}

// Start listens on opts.Addr (or takes opts.Listener, which it then
// owns) and serves until Close.
func Start(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ln := opts.Listener
	if ln == nil {
		var err error
		if ln, err = Listen(opts.Addr); err != nil {
			return nil, err
		}
	}
	s, err := serve(ln, opts)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return s, nil
}

// Listen opens the endpoint's socket, so a program can find a taken port
// before it joins the cluster, and Start later with Options.Listener.
func Listen(addr string) (net.Listener, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("%w: %q: want host:port (e.g. 127.0.0.1:8080)", ErrAddress, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%w: %s is in use by another process (choose another with -admin or adminAddress)", ErrAddress, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrAddress, err)
	}
	return ln, nil
}

func serve(ln net.Listener, opts Options) (*Server, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), BuildInfo())
	for _, c := range opts.Collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("admin: registering metrics: %w", err)
		}
	}
	if opts.Register != nil {
		if err := opts.Register(reg); err != nil {
			return nil, fmt.Errorf("admin: registering metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogErrors{opts.Logger}}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if opts.Ready != nil {
			if err := opts.Ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, "not ready:", err)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if opts.Status != nil {
		mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, opts.Status()) })
	}
	for path, h := range opts.Routes {
		mux.Handle(path, h)
	}
	s := &Server{ln: ln, srv: &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			opts.Logger.Error("admin endpoint stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the endpoint listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the endpoint: it waits up to 2 s for requests in flight,
// then closes their connections. It is idempotent and waits.
func (s *Server) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			s.err = s.srv.Close()
		}
		s.wg.Wait()
	})
	return s.err
}

// WriteJSON writes v as indented JSON.
func WriteJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "encoding the status: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(b, '\n'))
}

// BuildInfo is a collector of marsmesh_build_info{version, revision,
// goversion} = 1.
func BuildInfo() prometheus.Collector {
	v := version.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "marsmesh_build_info",
		Help:        "Build of this binary: module version, VCS revision and Go version (always 1).",
		ConstLabels: prometheus.Labels{"version": v.Version, "revision": v.Revision, "goversion": v.GoVersion},
	})
	g.Set(1)
	return g
}

type slogErrors struct{ log *slog.Logger }

func (l slogErrors) Println(v ...any) { l.log.Warn("admin: metrics: " + fmt.Sprint(v...)) }

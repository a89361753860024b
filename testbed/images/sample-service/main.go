// Command sample-service is the Go service the testbed runs on its real node
// (image readiness-testbed/sample-service:dev): a small HTTP API that does what a
// ServiceProfile asks of a production service, with switches to misbehave so that failures
// in the end-to-end tests are real ones.
//
//	:8080 ("http")     /          200, JSON with the hostname; ?sleep=MS holds the request MS ms
//	                   /healthz   200 while the process runs (liveness)
//	                   /readyz    503 until started and from SIGTERM on, else 200
//	                   /startupz  503 until the start delay has passed, then 200
//	:9090 ("metrics")  /metrics   Prometheus, default registry (Go and process collectors)
//	                   /debug/pprof/...  Go's pprof handlers (profile, allocs, goroutine, block, mutex, ...)
//
// Settings (flag, else environment, else default):
//
//	-start-delay     START_DELAY      0s     seconds ("5") or a Go duration ("1500ms")
//	-shutdown-delay  SHUTDOWN_DELAY   0s     after SIGTERM: unready, still serving, this long
//	-never-ready     NEVER_READY      false  /readyz never passes
//	-ignore-sigterm  IGNORE_SIGTERM   false  SIGTERM is logged and otherwise ignored
//	-http-addr       HTTP_ADDR        :8080
//	-metrics-addr    METRICS_ADDR     :9090
//	LOG_LEVEL (debug, info, warn, error; default info), LOG_FORMAT (json, the default, or text).
//
// Traces go out over OTLP only when the standard environment asks for it
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, protocol from
// OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL: grpc or http/protobuf, the default); every other
// OTEL_* variable is read by the OpenTelemetry SDK and exporters themselves.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

const serviceName = "sample-service"

// maxSleep bounds ?sleep= so that a typo cannot hold a connection for hours.
const maxSleep = 10 * time.Minute

type config struct {
	startDelay    time.Duration
	shutdownDelay time.Duration
	neverReady    bool
	ignoreSIGTERM bool
	httpAddr      string
	metricsAddr   string
}

func main() {
	cfg, err := parseConfig(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "sample-service:", err)
		os.Exit(2)
	}
	logger, err := newLogger(os.Getenv("LOG_LEVEL"), os.Getenv("LOG_FORMAT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "sample-service:", err)
		os.Exit(2)
	}
	slog.SetDefault(logger)
	if err := run(cfg); err != nil {
		slog.Error("sample-service failed", "error", err)
		os.Exit(1)
	}
}

// ---- settings -------------------------------------------------------------------------------

func parseConfig(args []string) (config, error) {
	var cfg config
	var errs []error
	duration := func(name, fallback string) time.Duration {
		value := envOr(name, fallback)
		d, err := parseDuration(value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", name, value, err))
		}
		return d
	}
	boolean := func(name string) bool {
		value := envOr(name, "false")
		b, err := strconv.ParseBool(value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", name, value, err))
		}
		return b
	}
	flags := flag.NewFlagSet(serviceName, flag.ContinueOnError)
	flags.DurationVar(&cfg.startDelay, "start-delay", duration("START_DELAY", "0s"), "time before /startupz and /readyz pass")
	flags.DurationVar(&cfg.shutdownDelay, "shutdown-delay", duration("SHUTDOWN_DELAY", "0s"), "after SIGTERM, time spent unready but serving")
	flags.BoolVar(&cfg.neverReady, "never-ready", boolean("NEVER_READY"), "/readyz never passes")
	flags.BoolVar(&cfg.ignoreSIGTERM, "ignore-sigterm", boolean("IGNORE_SIGTERM"), "log SIGTERM and carry on")
	flags.StringVar(&cfg.httpAddr, "http-addr", envOr("HTTP_ADDR", ":8080"), "API address")
	flags.StringVar(&cfg.metricsAddr, "metrics-addr", envOr("METRICS_ADDR", ":9090"), "metrics address")
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	if err := flags.Parse(args); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func envOr(name, fallback string) string {
	if value, ok := os.LookupEnv(name); ok && strings.TrimSpace(value) != "" {
		return strings.TrimSpace(value)
	}
	return fallback
}

// parseDuration accepts plain seconds ("5", "0.5") as well as Go durations ("1500ms").
func parseDuration(value string) (time.Duration, error) {
	if seconds, err := strconv.ParseFloat(value, 64); err == nil {
		if seconds < 0 {
			return 0, errors.New("negative")
		}
		return time.Duration(seconds * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(value)
	if err == nil && d < 0 {
		return 0, errors.New("negative")
	}
	return d, err
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if level != "" {
		if err := lvl.UnmarshalText([]byte(strings.ToLower(level))); err != nil {
			return nil, fmt.Errorf("LOG_LEVEL=%q: %w", level, err)
		}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "", "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)).With("service", serviceName), nil
	case "text", "logfmt":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)).With("service", serviceName), nil
	default:
		return nil, fmt.Errorf("LOG_FORMAT=%q: want json or text", format)
	}
}

// ---- tracing --------------------------------------------------------------------------------

// setupTracing installs a tracer provider with an OTLP exporter when the OTEL_* environment
// names an endpoint; otherwise the global no-op provider stays and nothing is exported.
func setupTracing(ctx context.Context) (func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	noop := func(context.Context) error { return nil }
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(os.Getenv("OTEL_TRACES_EXPORTER"), "none") {
		return noop, nil
	}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		slog.Debug("no OTLP endpoint in the environment: traces are not exported")
		return noop, nil
	}
	protocol := envOr("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", envOr("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
	var exporter sdktrace.SpanExporter
	var err error
	switch protocol {
	case "grpc":
		exporter, err = otlptracegrpc.New(ctx)
	case "http/protobuf":
		exporter, err = otlptracehttp.New(ctx)
	default:
		return noop, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want grpc or http/protobuf", protocol)
	}
	if err != nil {
		return noop, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	// service.name defaults to this program's name; OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES (read by WithFromEnv, applied last) override it.
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithFromEnv(),
	)
	if err != nil {
		slog.Warn("OpenTelemetry resource incomplete", "error", err)
	}
	// The sampler (OTEL_TRACES_SAMPLER[_ARG]) and the batch processor (OTEL_BSP_*) read the
	// environment themselves.
	provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	otel.SetTracerProvider(provider)
	slog.Info("exporting traces over OTLP", "protocol", protocol)
	return provider.Shutdown, nil
}

// ---- the service ----------------------------------------------------------------------------

type service struct {
	cfg        config
	hostname   string
	started    atomic.Bool // the start delay has passed
	stopping   atomic.Bool // SIGTERM arrived
	tracer     trace.Tracer
	inFlight   prometheus.Gauge
	readyGauge prometheus.Gauge
}

func newService(cfg config) *service {
	hostname, _ := os.Hostname()
	s := &service{
		cfg:      cfg,
		hostname: hostname,
		tracer:   otel.Tracer("readiness-testbed/sample-service"),
		inFlight: promauto.NewGauge(prometheus.GaugeOpts{
			Name: "sample_service_in_flight_requests",
			Help: "Requests to the API being served now.",
		}),
		readyGauge: promauto.NewGauge(prometheus.GaugeOpts{
			Name: "sample_service_ready",
			Help: "1 while /readyz answers 200.",
		}),
	}
	promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sample_service_start_delay_seconds",
		Help: "The configured start delay.",
	}, func() float64 { return cfg.startDelay.Seconds() })
	return s
}

func (s *service) ready() bool {
	ready := s.started.Load() && !s.stopping.Load() && !s.cfg.neverReady
	if ready {
		s.readyGauge.Set(1)
	} else {
		s.readyGauge.Set(0)
	}
	return ready
}

func (s *service) routes() http.Handler {
	requests := promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total",
		Help: "Requests to the API, by handler, method and status code.",
	}, []string{"handler", "method", "code"})
	duration := promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "http_request_duration_seconds",
		Help:    "Time to answer a request to the API, by handler.",
		Buckets: prometheus.DefBuckets,
	}, []string{"handler", "method", "code"})
	mux := http.NewServeMux()
	handle := func(pattern, name string, h http.HandlerFunc) {
		var handler http.Handler = s.traced(name, h)
		handler = promhttp.InstrumentHandlerCounter(requests.MustCurryWith(prometheus.Labels{"handler": name}), handler)
		handler = promhttp.InstrumentHandlerDuration(duration.MustCurryWith(prometheus.Labels{"handler": name}), handler)
		mux.Handle(pattern, handler)
	}
	handle("GET /healthz", "/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	handle("GET /readyz", "/readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case s.ready():
			writeText(w, http.StatusOK, "ready")
		case s.stopping.Load():
			writeText(w, http.StatusServiceUnavailable, "shutting down")
		case s.cfg.neverReady:
			writeText(w, http.StatusServiceUnavailable, "never ready (NEVER_READY)")
		default:
			writeText(w, http.StatusServiceUnavailable, "starting")
		}
	})
	handle("GET /startupz", "/startupz", func(w http.ResponseWriter, _ *http.Request) {
		if s.started.Load() {
			writeText(w, http.StatusOK, "started")
			return
		}
		writeText(w, http.StatusServiceUnavailable, "starting")
	})
	handle("GET /{$}", "/", s.root)
	return mux
}

func (s *service) root(w http.ResponseWriter, r *http.Request) {
	s.inFlight.Inc()
	defer s.inFlight.Dec()
	var slept time.Duration
	if value := r.URL.Query().Get("sleep"); value != "" {
		ms, err := strconv.Atoi(value)
		if err != nil || ms < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "sleep wants milliseconds"})
			return
		}
		wait := min(time.Duration(ms)*time.Millisecond, maxSleep)
		timer := time.NewTimer(wait)
		started := time.Now()
		select {
		case <-timer.C:
		case <-r.Context().Done(): // the client went away
			timer.Stop()
			return
		}
		slept = time.Since(started)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"service":    serviceName,
		"hostname":   s.hostname,
		"ready":      s.ready(),
		"stopping":   s.stopping.Load(),
		"slept_ms":   slept.Milliseconds(),
		"gomaxprocs": runtime.GOMAXPROCS(0),
		"time":       time.Now().UTC().Format(time.RFC3339Nano),
	})
}

// traced gives each request a server span, continuing the caller's trace context.
func (s *service) traced(name string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := s.tracer.Start(ctx, r.Method+" "+name, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("http.request.method", r.Method),
				attribute.String("url.path", r.URL.Path),
				attribute.String("http.route", name),
			))
		defer span.End()
		recorder := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		started := time.Now()
		next(recorder, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", recorder.status))
		if recorder.status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(recorder.status))
		}
		slog.DebugContext(ctx, "request", "method", r.Method, "path", r.URL.Path,
			"status", recorder.status, "duration_ms", time.Since(started).Milliseconds(),
			"remote", r.RemoteAddr)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func writeText(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, text)
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// ---- life cycle -----------------------------------------------------------------------------

func run(cfg config) error {
	ctx := context.Background()
	// Subscribe before anything can take time, so that an early SIGTERM is not lost.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)

	shutdownTracing, err := setupTracing(ctx)
	if err != nil {
		return err
	}
	s := newService(cfg)
	apiListener, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return err
	}
	metricsListener, err := net.Listen("tcp", cfg.metricsAddr)
	if err != nil {
		return err
	}
	api := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", promhttp.Handler())
	// Continuous profilers (Grafana Alloy's pyroscope.scrape) fetch profiles here, beside the metrics.
	metricsMux.HandleFunc("GET /debug/pprof/", pprof.Index)
	metricsMux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	metricsMux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	metricsMux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	metricsMux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	metrics := &http.Server{Handler: metricsMux, ReadHeaderTimeout: 10 * time.Second}

	served := make(chan error, 2)
	for _, pair := range []struct {
		server   *http.Server
		listener net.Listener
	}{{api, apiListener}, {metrics, metricsListener}} {
		go func() {
			if err := pair.server.Serve(pair.listener); !errors.Is(err, http.ErrServerClosed) {
				served <- err
			}
		}()
	}
	slog.Info("serving", "http", apiListener.Addr().String(), "metrics", metricsListener.Addr().String(),
		"start_delay", cfg.startDelay.String(), "shutdown_delay", cfg.shutdownDelay.String(),
		"never_ready", cfg.neverReady, "ignore_sigterm", cfg.ignoreSIGTERM,
		"gomaxprocs", runtime.GOMAXPROCS(0), "gomemlimit", memoryLimit())

	startTimer := time.AfterFunc(cfg.startDelay, func() {
		s.started.Store(true)
		s.ready()
		slog.Info("started", "after", cfg.startDelay.String())
	})
	defer startTimer.Stop()

	for {
		select {
		case err := <-served:
			return err
		case sig := <-signals:
			if cfg.ignoreSIGTERM && sig == syscall.SIGTERM {
				slog.Warn("ignoring SIGTERM (IGNORE_SIGTERM)")
				continue
			}
			return shutdown(s, sig, []*http.Server{api, metrics}, shutdownTracing)
		}
	}
}

func shutdown(s *service, sig os.Signal, servers []*http.Server, shutdownTracing func(context.Context) error) error {
	s.stopping.Store(true)
	s.ready()
	slog.Info("shutting down: unready", "signal", sig.String(), "shutdown_delay", s.cfg.shutdownDelay.String())
	time.Sleep(s.cfg.shutdownDelay) // still serving: endpoints are being updated meanwhile
	slog.Info("closing listeners, finishing in-flight requests")
	started := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, server := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// No deadline: in-flight requests finish; the kubelet's grace period bounds it.
			errs[i] = server.Shutdown(context.Background())
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := shutdownTracing(ctx); err != nil {
		slog.Warn("flushing traces", "error", err)
	}
	slog.Info("stopped", "drained_in_ms", time.Since(started).Milliseconds())
	return errors.Join(errs...)
}

// memoryLimit is the Go runtime's soft memory limit (GOMEMLIMIT), for the start-up log line.
func memoryLimit() string {
	limit := debug.SetMemoryLimit(-1)
	if limit == int64(^uint64(0)>>1) {
		return "none"
	}
	return strconv.FormatInt(limit, 10)
}

package cli

import (
	"log/slog"
	"net/http"
	_ "net/http/pprof" // profiles on the debug listener only
	"os"
)

// startPprof serves Go's profiles on GANTRY_PPROF_ADDR (e.g.
// 127.0.0.1:6060) when it is set: for finding where time goes in
// benchmarks. Never on by default.
func startPprof(log *slog.Logger) {
	addr := os.Getenv("GANTRY_PPROF_ADDR")
	if addr == "" {
		return
	}
	go func() {
		log.Info("profiling endpoint", "addr", addr)
		if err := http.ListenAndServe(addr, nil); err != nil {
			log.Warn("profiling endpoint stopped", "err", err)
		}
	}()
}

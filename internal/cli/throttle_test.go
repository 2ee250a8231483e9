package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gantryhq/gantry/internal/api"
)

// TestJobRunOverloaded: a server that answers a submission 429 with a
// Retry-After is waited out, and the CLI says why it waits; one that asks
// for longer than the command may take gets its sentence shown as the
// error, exit 1.
func TestJobRunOverloaded(t *testing.T) {
	const refusal = "server s1 is overloaded (900 evaluations wait to be scheduled; threshold 500) and refuses new submissions for now: the job was not accepted, retry in %s"
	var refusals atomic.Int32
	var retryAfter atomic.Value
	retryAfter.Store("1")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/jobs" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if refusals.Add(-1) >= 0 {
			ra := retryAfter.Load().(string)
			w.Header().Set("Retry-After", ra)
			w.WriteHeader(http.StatusTooManyRequests)
			json.NewEncoder(w).Encode(api.Error{Error: strings.ReplaceAll(refusal, "%s", ra+"s")})
			return
		}
		json.NewEncoder(w).Encode(api.RegisterResponse{EvalID: "0123456789abcdef", JobVersion: 1, Changed: true})
	}))
	defer srv.Close()
	spec := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(spec, []byte("name: web\ntype: batch\ngroups:\n  - name: g\n    tasks:\n      - name: t\n        driver: exec\n        config: {command: /bin/true}\n        resources: {cpu: 100, memory: 32}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func() (int, string, string) {
		var out, errw bytes.Buffer
		code := Main([]string{"--address", srv.URL, "job", "run", "-d", spec}, &out, &errw)
		return code, out.String(), errw.String()
	}

	refusals.Store(1)
	code, out, errs := run()
	if code != 0 || !strings.Contains(out, `Job "web" registered as version 1`) {
		t.Fatalf("refused once with Retry-After 1: exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, "is overloaded (900 evaluations wait to be scheduled") || !strings.Contains(errs, "sending it again in 1s") {
		t.Errorf("stderr %q does not say why the CLI waits", errs)
	}

	// 60 s is more than job run's 30 s for the submission.
	refusals.Store(1)
	retryAfter.Store("60")
	code, _, errs = run()
	if code != ExitError || !strings.Contains(errs, "submit job web: server s1 is overloaded") || !strings.Contains(errs, "retry in 60s") {
		t.Errorf("refused with Retry-After 60: exit %d, stderr %q; want exit 1 and the server's sentence", code, errs)
	}
}

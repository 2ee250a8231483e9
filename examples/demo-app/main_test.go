package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRoutes(t *testing.T) {
	h := &handler{start: time.Now(), hostname: "h1", allocID: "a1", version: "v1"}
	srv := httptest.NewServer(h.routes())
	defer srv.Close()

	for i := int64(1); i <= 2; i++ {
		resp, err := http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		var a answer
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if a != (answer{Hostname: "h1", AllocID: "a1", Count: i, Version: "v1"}) {
			t.Errorf("GET / = %+v", a)
		}
	}
	for path, want := range map[string]int{"/healthz": 200, "/slow?ms=1": 200, "/slow?ms=x": 400, "/nope": 404} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}

func TestUnhealthy(t *testing.T) {
	for name, h := range map[string]*handler{
		"from the start": {start: time.Now(), unhealthy: true},
		"after a while":  {start: time.Now().Add(-time.Hour), unhealthyAfter: time.Minute},
	} {
		rec := httptest.NewRecorder()
		h.routes().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s: /healthz = %d, want 503", name, rec.Code)
		}
	}
}

func TestBatch(t *testing.T) {
	var out, errb bytes.Buffer
	code := batch([]string{"--steps", "3", "--interval", "1ms", "--exit-code", "4"}, &out, &errb)
	if code != 4 {
		t.Errorf("exit code %d, want 4", code)
	}
	if strings.Count(out.String(), "step ") != 3 || !strings.HasSuffix(out.String(), "done, exiting 4\n") {
		t.Errorf("stdout %q", out.String())
	}
	if errb.String() != "progress 1/3\nprogress 2/3\nprogress 3/3\n" {
		t.Errorf("stderr %q", errb.String())
	}
}

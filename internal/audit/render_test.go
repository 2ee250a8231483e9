package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// An engine with nothing to report still renders every section, with
// empty lists rather than nulls.
func TestRenderEmptyReport(t *testing.T) {
	r := NewReport("node-1", reportTime, &Engine{Info: engPlain.Info}, nil)
	r.Engine = nil
	p := DefaultPolicy()

	var b bytes.Buffer
	if err := WriteTable(&b, r, RenderOptions{Policy: &p}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"node node-1", "0 containers", "2026-01-02T03:04:05Z", "no failing findings", "0 failing findings: 0 blocking, 0 warning"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table does not say %q:\n%s", want, b.String())
		}
	}

	b.Reset()
	if err := WriteJSON(&b, r, RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	var j map[string]any
	if err := json.Unmarshal(b.Bytes(), &j); err != nil {
		t.Fatal(err)
	}
	if _, ok := j["findings"].([]any); !ok {
		t.Errorf("findings is %v, want []", j["findings"])
	}
	if _, ok := j["blocking"]; ok {
		t.Error("blocking counted without a policy")
	}

	b.Reset()
	if err := WriteSARIF(&b, r, RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"results": []`) {
		t.Errorf("SARIF without results must hold an empty results array:\n%s", b.String())
	}
}

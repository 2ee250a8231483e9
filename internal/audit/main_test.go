package audit

import (
	"flag"
	"os"
	"testing"
)

var (
	update = flag.Bool("update", false, "rewrite the golden files under testdata from the current output")
	record = flag.Bool("record", false, "record the real containers' inspect output as fixtures under testdata/fixtures")
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	removeTestImage()
	os.Exit(code)
}

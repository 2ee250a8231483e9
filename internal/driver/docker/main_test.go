package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gantryhq/gantry/internal/driver"
)

// These tests run against the real Docker engine of the machine (CI has
// one). Every container they make carries a node id starting with
// testNode, and the demo image gets a tag of its own, so a run removes
// exactly what it made, even beside other runs.
var (
	runID     = randomHex(4)
	testNode  = "test-" + runID
	testImage = "gantry-demo-test:" + runID
)

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// Build the demo image the way a user does, under a tag of this run.
	script, _ := filepath.Abs("../../../scripts/build-demo-image.sh")
	out, err := exec.Command(script, testImage).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the demo image with %s failed: %v\n%s", script, err, out)
		return 1
	}
	defer cleanup()
	return m.Run()
}

func cleanup() {
	d, err := New(Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
		return
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := d.cli.ContainerList(ctx, client.ContainerListOptions{
		All: true, Filters: client.Filters{}.Add("label", driver.LabelManaged+"=true"),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
	}
	for _, c := range list.Items {
		if strings.HasPrefix(c.Labels[driver.LabelNode], testNode) {
			_, _ = d.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		}
	}
	// Untags only, when the same image is also tagged gantry-demo:latest.
	if _, err := d.cli.ImageRemove(ctx, testImage, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
		fmt.Fprintln(os.Stderr, "cleanup:", err)
	}
}

package audit

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
)

// The real-Docker tests run whenever an engine answers. Without one they
// skip and say so, unless GANTRY_REQUIRE_DOCKER=1 (CI) makes that a failure.
func dockerClient(t *testing.T) *client.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("real-Docker test skipped in -short mode")
	}
	cli, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = cli.Ping(ctx, client.PingOptions{})
	}
	if err != nil {
		if os.Getenv("GANTRY_REQUIRE_DOCKER") == "1" {
			t.Fatalf("no Docker engine, but GANTRY_REQUIRE_DOCKER=1: %v", err)
		}
		t.Skipf("no Docker engine reachable (%v): skipping real-container test", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

var (
	imageOnce  sync.Once
	imageErr   error
	imageBuilt bool
)

// ensureImage builds the test image once per test binary: FROM scratch
// with the static sleeper from testdata/sleeper. No registry is needed.
func ensureImage(t *testing.T, cli *client.Client) {
	t.Helper()
	imageOnce.Do(func() { imageErr = buildImage(cli) })
	if imageErr != nil {
		t.Fatalf("build test image: %v", imageErr)
	}
}

func buildImage(cli *client.Client) error {
	dir, err := os.MkdirTemp("", "gantry-audit-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "sleeper")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./testdata/sleeper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build sleeper: %v\n%s", err, out)
	}
	binData, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	dockerfile := []byte("FROM scratch\nCOPY sleeper " + sleeperPath + "\nENTRYPOINT [\"" + sleeperPath + "\"]\n")

	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, dockerfile}, {"sleeper", 0o755, binData}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := cli.ImageBuild(ctx, &ctxTar, client.ImageBuildOptions{
		Tags:        []string{testImage},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
		Labels:      map[string]string{testLabel: "image"},
	})
	if err != nil {
		return err
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("read build output: %w", err)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
	imageBuilt = true
	return nil
}

// removeTestImage removes the image after the run; it is rebuilt (from the
// engine's cache) by the next one.
func removeTestImage() {
	if !imageBuilt {
		return
	}
	cli, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = cli.ImageRemove(ctx, testImage, client.ImageRemoveOptions{PruneChildren: true})
}

// newRunID names one test run's containers, so that they cannot collide
// with another run's or anyone else's.
func newRunID(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startContainer starts a created container. The engine picks ephemeral
// host ports in sequence and does not skip one that another process on the
// host already holds; a retry gets the next port.
func startContainer(ctx context.Context, cli *client.Client, id string) error {
	var err error
	for range 5 {
		_, err = cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			return err
		}
	}
	return err
}

// removeContainer force-removes a container and its anonymous volumes; it
// is registered with t.Cleanup before the container is started, so it runs
// even when the test fails.
func removeContainer(t *testing.T, cli *client.Client, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
		t.Errorf("remove container %s: %v", id, err)
	}
}

package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/driver"
)

// MaxModuleBytes bounds a module file or download.
const MaxModuleBytes = 256 << 20

// ParseChecksum reads "sha256:<64 hex digits>" and returns the digest.
func ParseChecksum(s string) ([]byte, error) {
	algo, hexsum, ok := strings.Cut(s, ":")
	if !ok || algo != "sha256" {
		return nil, fmt.Errorf("checksum %q must be written sha256:<64 hex digits>", s)
	}
	sum, err := hex.DecodeString(hexsum)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("checksum %q must be written sha256:<64 hex digits>", s)
	}
	return sum, nil
}

// fetch downloads a.Source to dst and verifies it against a.Checksum
// before it is renamed into place; a file already at dst with the right
// checksum is kept. A mismatch wraps driver.ErrCannotRun: the same URL
// would give the same bytes again.
func fetch(ctx context.Context, client *http.Client, a *api.Artifact, dst string) error {
	want, err := ParseChecksum(a.Checksum)
	if err != nil {
		return fmt.Errorf("%w: artifact: %v", driver.ErrCannotRun, err)
	}
	if got, err := fileSum(dst); err == nil && string(got) == string(want) {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.Source, nil)
	if err != nil {
		return fmt.Errorf("%w: artifact source %q: %v", driver.ErrCannotRun, a.Source, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("download artifact %s: %w; check that the URL is reachable from the node", a.Source, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download artifact %s: the server answered %s", a.Source, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".*.part")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, MaxModuleBytes+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("download artifact %s: %w", a.Source, err)
	}
	if n > MaxModuleBytes {
		return fmt.Errorf("%w: artifact %s is larger than %d MiB", driver.ErrCannotRun, a.Source, MaxModuleBytes>>20)
	}
	if got := h.Sum(nil); string(got) != string(want) {
		return fmt.Errorf("%w: artifact %s has checksum sha256:%s, not the %s the job asks for; nothing was run", driver.ErrCannotRun, a.Source, hex.EncodeToString(got), a.Checksum)
	}
	return os.Rename(tmp.Name(), dst)
}

func fileSum(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// readModule reads a module file, refusing one too large to be a module.
func readModule(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: module %s does not exist on this node", driver.ErrCannotRun, path)
	}
	if err != nil {
		return nil, err
	}
	if st.IsDir() || st.Size() > MaxModuleBytes {
		return nil, fmt.Errorf("%w: module %s is not a file of at most %d MiB", driver.ErrCannotRun, path, MaxModuleBytes>>20)
	}
	return os.ReadFile(path)
}

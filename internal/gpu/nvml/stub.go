//go:build !cgo || !linux

package nvml

import "context"

// Library is the node's NVML. This build has none: every call reports
// ErrNotBuilt, and the node has no GPUs.
type Library struct{}

// Open returns the stub library of a build without cgo.
func Open() *Library { return &Library{} }

// Close does nothing.
func (l *Library) Close() error { return nil }

// Inventory reports ErrNotBuilt.
func (l *Library) Inventory() (*Inventory, error) { return nil, ErrNotBuilt }

// CreateMIG reports ErrNotBuilt.
func (l *Library) CreateMIG(gpu, profile string, start, size int) (string, error) {
	return "", ErrNotBuilt
}

// DestroyMIG reports ErrNotBuilt.
func (l *Library) DestroyMIG(gpu, instance string) error { return ErrNotBuilt }

// Samples reports ErrNotBuilt.
func (l *Library) Samples() ([]Sample, error) { return nil, ErrNotBuilt }

// WatchXID reports ErrNotBuilt at once.
func (l *Library) WatchXID(ctx context.Context, fn func(XIDEvent)) error { return ErrNotBuilt }

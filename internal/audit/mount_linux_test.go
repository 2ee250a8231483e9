package audit

import "syscall"

// makeShared turns dir into a shared mount point (a bind mount of itself),
// which the engine requires before it starts a container with shared
// propagation on it. It needs root; the returned function undoes it.
func makeShared(dir string) (undo func(), err error) {
	if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
		return nil, err
	}
	if err := syscall.Mount("", dir, "", syscall.MS_SHARED, ""); err != nil {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		return nil, err
	}
	return func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) }, nil
}

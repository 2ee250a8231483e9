// Command mkinitramfs writes a gzip-compressed initramfs (the cpio "newc"
// format the Linux kernel unpacks) from files on disk, so that
// scripts/build-vm-guest.sh needs no cpio tool:
//
//	mkinitramfs OUT.img /init=path/to/init /lib/modules/x.ko=path/x.ko ...
//
// Each argument is DEST=SRC; DEST's parent directories are created in the
// archive, files keep SRC's permission bits, and every entry is owned by
// root with a zero time, so the same inputs give the same bytes.
package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkinitramfs:", err)
		os.Exit(1)
	}
}

type entry struct {
	dest, src string
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: mkinitramfs OUT.img DEST=SRC...")
	}
	var files []entry
	dirs := map[string]bool{}
	for _, a := range args[1:] {
		dest, src, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(dest, "/") || src == "" {
			return fmt.Errorf("argument %q is not DEST=SRC with an absolute DEST", a)
		}
		dest = path.Clean(dest)
		files = append(files, entry{dest, src})
		for d := path.Dir(dest); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	out, err := os.Create(args[0])
	if err != nil {
		return err
	}
	defer out.Close()
	bw := bufio.NewWriter(out)
	zw, _ := gzip.NewWriterLevel(bw, gzip.BestCompression)
	w := &cpioWriter{w: zw, ino: 1}
	var dlist []string
	for d := range dirs {
		dlist = append(dlist, d)
	}
	sort.Strings(dlist) // parents sort before their children
	for _, d := range dlist {
		if err := w.add(d[1:], 0o040755, nil); err != nil {
			return err
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f.src)
		if err != nil {
			return err
		}
		st, err := os.Stat(f.src)
		if err != nil {
			return err
		}
		if err := w.add(f.dest[1:], 0o100000|uint32(st.Mode().Perm()), b); err != nil {
			return err
		}
	}
	if err := w.add("TRAILER!!!", 0, nil); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return out.Close()
}

type cpioWriter struct {
	w   io.Writer
	n   int64
	ino uint32
}

func (c *cpioWriter) write(b []byte) error {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.n % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

// add writes one newc entry: a 110-byte header of hex fields, the name
// with its NUL, padding to 4 bytes, the data, padding again.
func (c *cpioWriter) add(name string, mode uint32, data []byte) error {
	nlink := uint32(1)
	if mode&0o040000 != 0 {
		nlink = 2
	}
	ino := c.ino
	c.ino++
	if name == "TRAILER!!!" {
		ino = 0
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	if err := c.write([]byte(hdr)); err != nil {
		return err
	}
	if err := c.write(append([]byte(name), 0)); err != nil {
		return err
	}
	if err := c.pad(); err != nil {
		return err
	}
	if err := c.write(data); err != nil {
		return err
	}
	return c.pad()
}

package qemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"strings"
)

// Image formats the driver boots.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// otherFormats are the magic numbers of disk formats QEMU knows but the
// driver does not boot: an image starting with one is neither qcow2 nor
// raw, whatever its name says.
var otherFormats = []struct {
	name  string
	off   int
	magic string
}{
	{"vmdk", 0, "KDMV"},
	{"vmdk (descriptor)", 0, "# Disk DescriptorFile"},
	{"vdi", 64, "\x7f\x10\xda\xbe"},
	{"vhdx", 0, "vhdxfile"},
	{"vpc (vhd)", 0, "conectix"},
	{"qed", 0, "QED\x00"},
	{"qcow (version 1)", 0, "QFI\xfb\x00\x00\x00\x01"},
	{"luks", 0, "LUKS\xba\xbe"},
	{"dmg", 0, "koly"},
}

// DetectFormat says which format an image's first bytes (at least 72,
// fewer for a tiny raw image) are: qcow2 (version 2 or 3), raw, or an
// error naming the other format it is.
func DetectFormat(head []byte) (string, error) {
	if len(head) >= 8 && bytes.HasPrefix(head, []byte("QFI\xfb")) {
		if v := head[7]; head[4] == 0 && head[5] == 0 && head[6] == 0 && (v == 2 || v == 3) {
			return FormatQCOW2, nil
		}
	}
	for _, f := range otherFormats {
		if len(head) >= f.off+len(f.magic) && string(head[f.off:f.off+len(f.magic)]) == f.magic {
			return "", fmt.Errorf("is a %s image, which the qemu driver does not boot; convert it with qemu-img convert -O qcow2", f.name)
		}
	}
	return FormatRaw, nil
}

// imageFormat opens the image read-only and detects its format.
func imageFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("image %s cannot be read: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("image %s cannot be read: %w", path, err)
	}
	if !st.Mode().IsRegular() && st.Mode()&os.ModeDevice == 0 {
		return "", fmt.Errorf("image %s is not a file", path)
	}
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", fmt.Errorf("image %s cannot be read: %w", path, err)
	}
	if n == 0 {
		return "", fmt.Errorf("image %s is empty", path)
	}
	format, err := DetectFormat(head[:n])
	if err != nil {
		return "", fmt.Errorf("image %s %w", path, err)
	}
	return format, nil
}

// makeOverlay creates a qcow2 overlay at path whose backing file is the
// image, so that the VM writes to the overlay and never to the image.
func makeOverlay(ctx context.Context, qemuImg, image, format, path string) error {
	os.Remove(path)
	cmd := osexec.CommandContext(ctx, qemuImg, "create", "-q", "-f", FormatQCOW2, "-F", format, "-b", image, path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("create the copy-on-write overlay of %s with qemu-img: %s (%w)", image, strings.TrimSpace(string(out)), err)
	}
	return nil
}

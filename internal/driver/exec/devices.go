package exec

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// nvidiaMajor is the character-device major of /dev/nvidia<N> (the GPUs,
// minors 0..253; 254 is nvidia-modeset and 255 nvidiactl, which every
// CUDA process needs and which give no access to a GPU by themselves).
const nvidiaMajor = 195

// bpf instruction, as the kernel reads it.
type bpfInsn struct {
	code uint8
	regs uint8 // dst in the low nibble, src in the high
	off  int16
	imm  int32
}

const (
	opLdxW   = unix.BPF_LDX | unix.BPF_W | unix.BPF_MEM   // dst = *(u32 *)(src + off)
	opAndK   = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K   // dst &= imm (32 bit)
	opJneK   = unix.BPF_JMP | unix.BPF_JNE | unix.BPF_K   // if dst != imm goto +off
	opJeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K   // if dst == imm goto +off
	opMov64K = unix.BPF_ALU64 | unix.BPF_MOV | unix.BPF_K // dst = imm
	opExit   = unix.BPF_JMP | unix.BPF_EXIT
)

// deviceFilter is a cgroup device program that denies the character
// devices 195:<minor> for the given minors and allows everything else.
// Its context is struct bpf_cgroup_dev_ctx {u32 access_type; u32 major;
// u32 minor}, access_type being (access << 16) | type.
func deviceFilter(deny []int) []bpfInsn {
	k := len(deny)
	allow := 6 + k
	denyAt := allow + 2
	p := []bpfInsn{
		{code: opLdxW, regs: 2 | 1<<4, off: 0}, // r2 = access_type
		{code: opAndK, regs: 2, imm: 0xffff},   // w2 = type
		{code: opLdxW, regs: 3 | 1<<4, off: 4}, // r3 = major
		{code: opLdxW, regs: 4 | 1<<4, off: 8}, // r4 = minor
		{code: opJneK, regs: 2, off: int16(allow - 4 - 1), imm: unix.BPF_DEVCG_DEV_CHAR},
		{code: opJneK, regs: 3, off: int16(allow - 5 - 1), imm: nvidiaMajor},
	}
	for j, m := range deny {
		p = append(p, bpfInsn{code: opJeqK, regs: 4, off: int16(denyAt - (6 + j) - 1), imm: int32(m)})
	}
	return append(p,
		bpfInsn{code: opMov64K, regs: 0, imm: 1}, bpfInsn{code: opExit}, // allow
		bpfInsn{code: opMov64K, regs: 0, imm: 0}, bpfInsn{code: opExit}, // deny
	)
}

// progLoadAttr is the BPF_PROG_LOAD part of union bpf_attr.
type progLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       uint64
	license     uint64
	logLevel    uint32
	logSize     uint32
	logBuf      uint64
	kernVersion uint32
	progFlags   uint32
	progName    [16]byte
	_           [64]byte // the rest of the union, zero
}

// progAttachAttr is the BPF_PROG_ATTACH part of union bpf_attr.
type progAttachAttr struct {
	targetFD     uint32
	attachBPFFD  uint32
	attachType   uint32
	attachFlags  uint32
	replaceBPFFD uint32
	_            [108]byte
}

func loadDeviceFilter(deny []int) (int, error) {
	insns := deviceFilter(deny)
	license := []byte("GPL\x00")
	logBuf := make([]byte, 4096)
	attr := progLoadAttr{
		progType: unix.BPF_PROG_TYPE_CGROUP_DEVICE,
		insnCnt:  uint32(len(insns)),
		insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
		logLevel: 1,
		logSize:  uint32(len(logBuf)),
		logBuf:   uint64(uintptr(unsafe.Pointer(&logBuf[0]))),
	}
	copy(attr.progName[:], "gantry_gpu_dev")
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	runtime.KeepAlive(logBuf)
	if errno != 0 {
		msg := string(logBuf)
		if i := indexByte(logBuf, 0); i >= 0 {
			msg = string(logBuf[:i])
		}
		if msg != "" {
			return -1, fmt.Errorf("load the cgroup device program: %w (verifier: %s)", errno, msg)
		}
		return -1, fmt.Errorf("load the cgroup device program: %w", errno)
	}
	return int(fd), nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// denyGPUDevices attaches to the cgroup open at cgroupFD a device program
// that denies /dev/nvidia<minor> for each of minors. Programs of the
// ancestors keep applying (BPF_F_ALLOW_MULTI): this one only narrows.
func denyGPUDevices(cgroupFD int, minors []int) error {
	prog, err := loadDeviceFilter(minors)
	if err != nil {
		return err
	}
	defer unix.Close(prog)
	attr := progAttachAttr{
		targetFD:    uint32(cgroupFD),
		attachBPFFD: uint32(prog),
		attachType:  unix.BPF_CGROUP_DEVICE,
		attachFlags: unix.BPF_F_ALLOW_MULTI,
	}
	if _, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_ATTACH, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr)); errno != 0 {
		return fmt.Errorf("attach the cgroup device program: %w", errno)
	}
	return nil
}

// deviceFilterSupport says whether this host lets the driver load cgroup
// device programs, and if not why.
func deviceFilterSupport() (bool, string) {
	fd, err := loadDeviceFilter([]int{0})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return false, "loading a cgroup device program (BPF) is not permitted to the agent (it needs CAP_BPF and CAP_SYS_ADMIN)"
		}
		return false, err.Error()
	}
	unix.Close(fd)
	return true, ""
}

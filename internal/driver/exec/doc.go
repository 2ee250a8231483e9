// Package exec is Gantry's exec driver: it runs a task as a process group
// on the node, in AllocDir/<task>, with the task's environment
// (driver.TaskEnv with host ports, see TaskEnv).
//
// Every task runs under an executor, the gantry binary re-executed as
// `gantry executor <spec>` (RunExecutor) in a session of its own. The
// executor starts the task in its own process group, copies its stdout and
// stderr into size-rotated files AllocDir/logs/<task>.stdout.N and
// .stderr.N (the highest N is current), writes a handle file when the task
// runs and an exit file when it ends, all under AllocDir/.exec/. The agent
// can therefore be killed -9 and restarted: a new Driver finds the task
// with Recover, checks it by pid and process start time (a reused pid does
// not pass), and Wait reads the exit status from the file.
//
// Limits: with cgroup v2 mounted writable at /sys/fs/cgroup each task is
// born in its own cgroup (memory.max, cpu.max) under Config.CgroupParent,
// and an OOM kill is reported. Without it (cgroup v1 hosts) limits are not
// enforced, and Fingerprint's Isolation says so and why. Of task.Security
// only user is applied.
//
// GPUs: CUDA_VISIBLE_DEVICES lists the allocated devices, and is set empty
// for tasks without GPUs, which hides every GPU from CUDA (cuInit returns
// CUDA_ERROR_NO_DEVICE; checked against an H100 driver). That alone is a
// convention CUDA honours, not isolation. Where tasks get a cgroup v2 and
// the agent may load BPF programs, each task's cgroup also gets a device
// program denying the /dev/nvidia<N> of every GPU it was not given
// (TaskConfig.DenyGPUMinors), so a process that drops the variable still
// cannot open them; elsewhere (cgroup v1) /dev/nvidia* stay reachable and
// Fingerprint's Isolation says so. A MIG task reaches its GPU's device:
// instances of one GPU are told apart by CUDA_VISIBLE_DEVICES only.
//
// Another driver can run its processes under the same executor: the qemu
// driver makes its own Driver with Config.Kind "qemu", whose state files
// live in AllocDir/.qemu/ and whose handles only its Recover returns.
// Such a driver may also ask StartWith for frame streams: pipes handed to
// the task from descriptor 3 on, on which it writes length-prefixed
// frames (QEMU's filter-mirror); the executor counts frames and bytes and
// keeps the totals beside the handle (FrameCounts), reading nothing else.
// A driver whose program is slow to get ready can start a spare
// executor ahead of its task (StartSpare, spare.go): the program runs
// and waits, and a start that passes the spare in StartOptions hands it
// the task instead of starting a new executor.
//
// The package owns the executor, the layout of those files, their
// rotation and the frame counts. It must never talk to the state store, never decide placement
// or ports, and never restart a task: the agent decides that.
package exec

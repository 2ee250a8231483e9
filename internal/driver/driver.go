package driver

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/gantryhq/gantry/internal/api"
)

// Driver starts and supervises tasks of one kind on one node.
type Driver interface {
	// Name is the driver's name in job specs ("docker", "exec").
	Name() string
	// Fingerprint says whether the driver can run tasks here, and if not why.
	Fingerprint(ctx context.Context) api.DriverInfo
	// Start creates and starts the task. It returns once the task runs.
	Start(ctx context.Context, cfg *TaskConfig) (*Handle, error)
	// Wait blocks until the task exits or ctx ends.
	Wait(ctx context.Context, h *Handle) (*ExitResult, error)
	// Stop asks the task to exit, and kills it after grace.
	Stop(ctx context.Context, h *Handle, grace time.Duration) error
	// Destroy removes whatever the task left behind (container, files it
	// does not need for logs). It is safe to call on a task already gone.
	Destroy(ctx context.Context, h *Handle) error
	// Recover finds every task this driver started for nodeID that still
	// exists (running or exited), so the agent can re-attach after a restart.
	Recover(ctx context.Context, nodeID string) ([]*Handle, error)
}

// Logs is implemented by drivers that can stream a task's output.
type Logs interface {
	Logs(ctx context.Context, h *Handle, opts LogOptions) (io.ReadCloser, error)
}

// Execer is implemented by drivers that can run a command inside a task.
type Execer interface {
	Exec(ctx context.Context, h *Handle, req *ExecRequest) (exitCode int, err error)
}

// TaskConfig is everything a driver needs to start one task.
type TaskConfig struct {
	NodeID    string
	AllocID   string
	Namespace string
	Job       string
	Group     string
	Index     int
	Task      *api.Task
	Resources *api.AllocatedResources
	// AllocDir is the allocation's directory on the node; the exec driver
	// runs tasks in AllocDir/<task> and keeps logs in AllocDir/logs.
	AllocDir string
	// BindAddress is the node address that host ports bind to.
	BindAddress string
	// Env is the full task environment: the spec's env plus GANTRY_*
	// variables (see TaskEnv).
	Env map[string]string
	// DenyGPUMinors are the minors of the node's /dev/nvidia<N> devices
	// the task was not given (for a MIG instance, its GPU is given).
	// Drivers that can restrict device access deny these; the others rely
	// on their runtime (docker) or say they cannot (see Fingerprint).
	DenyGPUMinors []int
	// Resolver, when set, is this node's DNS resolver for containers
	// (the agent's, package dns): a driver whose tasks get their own
	// network namespace on the node's default bridge points their
	// resolver there, with its search domains. Nil: the runtime's own.
	Resolver *Resolver
}

// Resolver is a DNS server for a task and the search domains that make
// plain names resolve.
type Resolver struct {
	Address string   // an IPv4 address, port 53
	Search  []string // search domains, in order
}

// Handle identifies a started task so it can be waited on, stopped and
// recovered.
type Handle struct {
	Driver   string    `json:"driver"`
	ID       string    `json:"id"` // container ID, or the exec driver's own ID
	AllocID  string    `json:"alloc_id"`
	Task     string    `json:"task"`
	Started  time.Time `json:"started"`
	Running  bool      `json:"running"` // as found by Recover
	Pid      int       `json:"pid,omitempty"`
	Internal string    `json:"internal,omitempty"` // driver-private state
}

// ExitResult is how a task ended.
type ExitResult struct {
	ExitCode  int
	Signal    int
	OOMKilled bool
	Err       error // the driver lost track of the task
	// Message says why the task ended when its exit code alone does not
	// (a wasm trap and the function it happened in); empty otherwise.
	Message string
}

// Successful reports a clean exit.
func (r *ExitResult) Successful() bool {
	return r.ExitCode == 0 && r.Signal == 0 && !r.OOMKilled && r.Err == nil
}

// LogOptions selects which output to stream and how.
type LogOptions struct {
	Stderr bool // stderr instead of stdout
	// Both streams, interleaved as the driver recorded them (Stderr is
	// then ignored); Tail counts lines of both.
	Both   bool
	Follow bool
	Tail   int // last N lines; 0 means all
}

// ExecRequest is a command to run inside a task.
type ExecRequest struct {
	Cmd    []string
	TTY    bool
	Stdin  io.Reader // nil: no stdin
	Stdout io.Writer
	Stderr io.Writer // ignored with TTY: the terminal merges both
	Resize <-chan TermSize
}

// TermSize is a terminal's size in characters.
type TermSize struct {
	Width  uint
	Height uint
}

// ErrTaskNotFound is returned when a handle names a task that no longer
// exists; the agent treats the task as exited.
var ErrTaskNotFound = errors.New("task not found")

// ErrImageNotFound is returned by Start when the image is absent locally
// and cannot be pulled.
var ErrImageNotFound = errors.New("image not found")

// Attributer is implemented by drivers that report node attributes beyond
// their version; the agent publishes each as driver.<name>.<key>, for
// constraints such as ${driver.qemu.kvm}.
type Attributer interface {
	Attributes(ctx context.Context) map[string]string
}

// StopDescriber is implemented by drivers whose Stop is not a signal
// followed by SIGKILL: the agent's Killing event says what Stop will do.
type StopDescriber interface {
	DescribeStop(h *Handle, grace time.Duration) string
}

// ExitNotifier is implemented by drivers whose Start, Stop and Destroy
// return at once, never blocking on the world outside the process, and
// that can tell of a task's exit by calling back instead of through a
// blocking Wait (the null driver). An agent configured for it
// (agent.Config.EventTasks) then steps such tasks from one shared loop
// instead of a goroutine per task.
type ExitNotifier interface {
	// NotifyExit calls f once, with what Wait would return, when the task
	// of h exits: at once (before NotifyExit returns) when it has exited
	// or the driver does not know it. f must not block: it is called
	// from whatever ends the task, possibly under the driver's locks.
	NotifyExit(h *Handle, f func(*ExitResult, error))
}

// ErrCannotRun is wrapped by Start when what the task names can never run
// as given (not a WebAssembly module, a checksum mismatch, imports the
// runtime does not provide): the agent does not retry it.
var ErrCannotRun = errors.New("task cannot run as specified")

package jobspec

// Limits on a job spec. They keep hostile or mistaken input from costing
// the server memory or time; every one is far above what a real job needs.
// The messages that enforce them name the limit.
const (
	MaxSpecBytes = 1 << 20 // size of the spec text given to Parse

	MaxGroups       = 100    // groups per job
	MaxTasks        = 50     // tasks per group
	MaxCount        = 10_000 // replicas per group
	MaxConstraints  = 64     // constraints per group; the same bound holds for affinities
	MaxSpreads      = 16     // spread blocks per group
	MaxTargets      = 100    // targets per spread block
	MaxServices     = 64     // services per group
	MaxChecks       = 16     // health checks per task
	MaxPorts        = 64     // ports per task
	MaxArgs         = 1000   // entries of args, entrypoint and an exec check's command
	MaxEnv          = 1000   // env entries per task
	MaxCapabilities = 64     // entries of cap_add and of cap_drop
	MaxVolumes      = 64     // bind mounts per task
	MaxDevices      = 64     // host devices per task

	MaxString      = 4096      // bytes in most string values (image, command, an argument, a path)
	MaxShortString = 256       // bytes in attributes, label values, env names, models, users
	MaxEnvValue    = 32 * 1024 // bytes in one env value

	MaxCPU               = 1_000_000 // millicores (1000 cores)
	MaxMemoryMiB         = 16 << 20  // 16 TiB
	MaxDiskMiB           = 1 << 30   // 1 PiB
	MaxGPUCount          = 16        // whole GPUs per task
	MaxRestartAttempts   = 1000      // restarts per interval
	MaxCheckFailures     = 1000      // consecutive failures before unhealthy
	MaxUpdateMaxParallel = MaxCount  // allocations updated at once

	// MaxErrors bounds the problems Parse reports; the rest are counted.
	MaxErrors = 100
)

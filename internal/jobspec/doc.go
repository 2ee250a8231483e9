// Package jobspec owns the job spec: it turns spec text (YAML or JSON) into
// a validated api.Job, and when it cannot, it says what is wrong with every
// field at once, each problem located by path and line
// ("groups[0].tasks[1].resources.memory: must be greater than 0 (MiB), not 0 (web.yaml:14)").
//
// Three steps, usable apart:
//
//   - Parse reads the text (bounded in size; no YAML aliases, one document),
//     decodes it strictly (unknown keys are errors), applies defaults and
//     validates, attaching lines to every problem.
//   - Canonicalize fills in defaults on a decoded job.
//   - Validate checks a decoded job and returns problems by path, without
//     lines; the server runs Canonicalize and Validate on JSON bodies and
//     gets the same messages Parse gives for a file.
//
// Keys the contract reserves for features not built yet are listed in
// Unsupported and rejected with "not supported yet".
//
// This package must never do I/O beyond the bytes it is given, read the
// clock, or know anything about the cluster: whether a job can be placed
// on the nodes that exist is the scheduler's question. The rules here are
// the ones that hold for every cluster.
package jobspec

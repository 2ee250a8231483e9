// Package compose deploys Compose files onto Gantry: it loads them with
// compose-go exactly as Docker Compose does (interpolation, .env, several
// files merged, profiles, extends) and translates each service into one
// Gantry job, naming every option it cannot honour instead of dropping it.
//
// Load does the reading (files, the environment). Translate is pure: a
// loaded project in, jobs in start order and warnings out, no I/O and no
// cluster, so `gantry compose config` prints exactly what `gantry compose
// up` submits and the golden tests in testdata pin the translation of
// every supported key.
//
// This package must never talk to the cluster or the Docker engine:
// pre-flight checks against them (images present, GPUs that fit) and
// following deployments belong to the CLI (internal/cli/compose.go).
package compose

package versions

import _ "embed"

// DefaultPolicyYAML is the starting policy Gantry ships
// (policy/default.yaml).
//
//go:embed policy/default.yaml
var DefaultPolicyYAML []byte

// DefaultPolicy parses the shipped starting policy.
func DefaultPolicy() (*Policy, error) { return ParsePolicy(DefaultPolicyYAML) }

package jobspec

// Unsupported lists the job-spec keys that are reserved by the contract and
// parsed into the api types, but not implemented yet. Each key is a path
// pattern in which "[]" stands for any index; the value names the feature.
// A spec that uses one of them is rejected with "<path>: not supported yet".
//
// This is the one place to change when a feature lands: delete its entry
// and the validation rules written for it (in validate.go) take effect.
var Unsupported = map[string]string{}

// unsupported returns the problem to report when the key at pattern is used,
// or false when the key is supported.
func unsupported(pattern string) (string, bool) {
	feature, ok := Unsupported[pattern]
	if !ok {
		return "", false
	}
	return "not supported yet (" + feature + "); remove this key", true
}

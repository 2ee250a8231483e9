package audit

import (
	"encoding/json"
	"io"
	"time"
)

// SARIF 2.1.0: the version and schema a log declares.
const (
	SARIFVersion = "2.1.0"
	SARIFSchema  = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)

// The subset of the SARIF 2.1.0 object model the audit writes.
type (
	sarifLog struct {
		Schema  string     `json:"$schema"`
		Version string     `json:"version"`
		Runs    []sarifRun `json:"runs"`
	}
	sarifRun struct {
		Tool        sarifTool         `json:"tool"`
		Invocations []sarifInvocation `json:"invocations,omitempty"`
		Results     []sarifResult     `json:"results"`
		Properties  map[string]any    `json:"properties,omitempty"`
	}
	sarifTool struct {
		Driver sarifDriver `json:"driver"`
	}
	sarifDriver struct {
		Name           string      `json:"name"`
		FullName       string      `json:"fullName,omitempty"`
		InformationURI string      `json:"informationUri,omitempty"`
		Rules          []sarifRule `json:"rules"`
	}
	sarifRule struct {
		ID                   string             `json:"id"`
		Name                 string             `json:"name"`
		ShortDescription     sarifText          `json:"shortDescription"`
		Help                 sarifText          `json:"help"`
		DefaultConfiguration sarifConfiguration `json:"defaultConfiguration"`
		Properties           map[string]any     `json:"properties,omitempty"`
	}
	sarifConfiguration struct {
		Level string `json:"level"`
	}
	sarifText struct {
		Text string `json:"text"`
	}
	sarifInvocation struct {
		ExecutionSuccessful bool   `json:"executionSuccessful"`
		EndTimeUTC          string `json:"endTimeUtc,omitempty"`
	}
	sarifResult struct {
		RuleID     string            `json:"ruleId"`
		RuleIndex  int               `json:"ruleIndex"`
		Level      string            `json:"level"`
		Message    sarifText         `json:"message"`
		Locations  []sarifLocation   `json:"locations"`
		Properties map[string]string `json:"properties,omitempty"`
	}
	sarifLocation struct {
		LogicalLocations []sarifLogicalLocation `json:"logicalLocations"`
	}
	sarifLogicalLocation struct {
		Name               string `json:"name"`
		FullyQualifiedName string `json:"fullyQualifiedName"`
		Kind               string `json:"kind"`
	}
)

// levelOf maps a severity to a SARIF level.
func levelOf(s Severity) string {
	switch s {
	case SeverityCritical, SeverityHigh:
		return "error"
	case SeverityMedium:
		return "warning"
	}
	return "note"
}

// securitySeverity is the numeric score code-scanning tools read from a
// rule's "security-severity" property.
func securitySeverity(s Severity) string {
	switch s {
	case SeverityCritical:
		return "9.5"
	case SeverityHigh:
		return "8.0"
	case SeverityMedium:
		return "5.5"
	}
	return "3.0"
}

// WriteSARIF writes the report's failures as a SARIF 2.1.0 log with one
// run: every check is a rule of the driver, every failing finding a result
// located at its container (a logical location "<node>/<container>", or
// "<node>/engine" for engine findings). A result's level is its policy
// action when opts.Policy is set (block: error, warn: warning, ignore:
// note), and follows its severity otherwise.
func WriteSARIF(w io.Writer, r Report, opts RenderOptions) error {
	return WriteSARIFReports(w, []Report{r}, opts)
}

// WriteSARIFReports writes the failures of several nodes' reports as one
// SARIF 2.1.0 log with one run (code-scanning tools accept one run per
// tool): each result is located at "<node>/<container>", and the run's end
// time is the latest report's.
func WriteSARIFReports(w io.Writer, reports []Report, opts RenderOptions) error {
	var rules []sarifRule
	index := map[string]int{}
	add := func(id, name, title, remediation string, sev Severity) {
		index[id] = len(rules)
		rules = append(rules, sarifRule{
			ID: id, Name: name,
			ShortDescription:     sarifText{Text: title},
			Help:                 sarifText{Text: remediation},
			DefaultConfiguration: sarifConfiguration{Level: levelOf(sev)},
			Properties: map[string]any{
				"tags":              []string{"security", "cis-docker-1.6.0"},
				"security-severity": securitySeverity(sev),
			},
		})
	}
	for _, c := range engineChecks {
		add(c.ID, c.Name, c.Title, c.Remediation, c.Severity)
	}
	for _, c := range containerChecks {
		add(c.ID, c.Name, c.Title, c.Remediation, c.Severity)
	}

	results := []sarifResult{}
	var end time.Time
	for _, r := range reports {
		if r.Time.After(end) {
			end = r.Time
		}
		results = append(results, sarifResults(r, opts, index)...)
	}
	props := map[string]any{}
	if len(reports) == 1 {
		r := reports[0]
		props = map[string]any{"node": r.Node, "engine_version": r.EngineVersion, "containers": r.Containers}
	} else {
		nodes := []map[string]any{}
		for _, r := range reports {
			nodes = append(nodes, map[string]any{"node": r.Node, "engine_version": r.EngineVersion, "containers": r.Containers})
		}
		props["nodes"] = nodes
	}

	log := sarifLog{
		Schema:  SARIFSchema,
		Version: SARIFVersion,
		Runs: []sarifRun{{
			Tool: sarifTool{Driver: sarifDriver{
				Name:           "gantry-audit",
				FullName:       "Gantry container isolation audit (" + Benchmark + ")",
				InformationURI: "https://github.com/gantryhq/gantry",
				Rules:          rules,
			}},
			Invocations: []sarifInvocation{{ExecutionSuccessful: true, EndTimeUTC: end.UTC().Format(time.RFC3339)}},
			Results:     results,
			Properties:  props,
		}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}

// sarifResults are the SARIF results of one report's failures.
func sarifResults(r Report, opts RenderOptions, index map[string]int) []sarifResult {
	results := []sarifResult{}
	for _, f := range r.Failures() {
		level := levelOf(f.Severity)
		if opts.Policy != nil {
			switch opts.action(f) {
			case ActionBlock:
				level = "error"
			case ActionWarn:
				level = "warning"
			default:
				level = "note"
			}
		}
		loc := sarifLogicalLocation{Name: "engine", FullyQualifiedName: r.Node + "/engine", Kind: "resource"}
		props := map[string]string{"severity": string(f.Severity)}
		if f.ContainerID != "" {
			name := containerLabel(f)
			loc = sarifLogicalLocation{Name: name, FullyQualifiedName: r.Node + "/" + name, Kind: "resource"}
			props["container_id"] = f.ContainerID
			for k, v := range map[string]string{"image": f.Image, "namespace": f.Namespace, "job": f.Job,
				"group": f.Group, "alloc": f.Alloc, "task": f.Task} {
				if v != "" {
					props[k] = v
				}
			}
		}
		msg := f.Detail
		if f.ContainerID != "" {
			msg = containerLabel(f) + ": " + f.Detail
		}
		results = append(results, sarifResult{
			RuleID: f.CheckID, RuleIndex: index[f.CheckID], Level: level,
			Message:    sarifText{Text: msg},
			Locations:  []sarifLocation{{LogicalLocations: []sarifLogicalLocation{loc}}},
			Properties: props,
		})
	}

	return results
}

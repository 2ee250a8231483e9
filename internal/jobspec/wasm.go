package jobspec

import (
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
)

// The rules for the wasm driver's config keys (module, artifact, mounts).
// Whether a host path may be mounted is the node's decision, checked when
// the task starts; here only the form is.

var sha256Checksum = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// MaxMounts bounds config.mounts.
const MaxMounts = 32

// wasm checks a wasm task's config, and that no other driver's task uses
// the wasm-only keys.
func (v *validator) wasm(t *api.Task, cp string) {
	c := t.Config
	if t.Driver != api.DriverWasm {
		for _, k := range []struct {
			key string
			set bool
		}{{"module", c.Module != ""}, {"artifact", c.Artifact != nil}, {"mounts", len(c.Mounts) > 0}} {
			if k.set {
				v.add(cp+"."+k.key, "applies only to the wasm driver")
			}
		}
		return
	}
	for _, k := range []struct {
		key string
		set bool
	}{{"image", c.Image != ""}, {"command", c.Command != ""}, {"entrypoint", len(c.Entrypoint) > 0}} {
		if k.set {
			v.add(cp+"."+k.key, "does not apply to the wasm driver; give the module with config.module or config.artifact")
		}
	}
	switch {
	case c.Module == "" && c.Artifact == nil:
		v.add(cp+".module", "is required by the wasm driver: a .wasm file on the node, or use config.artifact to download one")
	case c.Module != "" && c.Artifact != nil:
		v.add(cp+".artifact", "cannot be given with config.module; use one of the two")
	case c.Module != "":
		if v.length(cp+".module", c.Module, MaxString) && !path.IsAbs(c.Module) {
			v.add(cp+".module", "%s must be an absolute path of a .wasm file on the node", quote(c.Module))
		}
	default:
		ap := cp + ".artifact"
		a := c.Artifact
		if v.length(ap+".source", a.Source, MaxString) {
			u, err := url.Parse(a.Source)
			switch {
			case a.Source == "":
				v.add(ap+".source", "is required: the http or https URL of the module")
			case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
				v.add(ap+".source", "%s is not an http or https URL", quote(a.Source))
			}
		}
		switch {
		case a.Checksum == "":
			v.add(ap+".checksum", `is required: "sha256:<64 hex digits>" of the module, checked before it runs`)
		case !sha256Checksum.MatchString(a.Checksum):
			v.add(ap+".checksum", `%s is not a checksum; write "sha256:" and 64 lower-case hex digits`, quote(a.Checksum))
		}
	}
	targets := map[string]string{}
	for i, m := range c.Mounts[:v.bounded(cp+".mounts", len(c.Mounts), MaxMounts, "mounts")] {
		q := index(cp+".mounts", i)
		if v.length(q+".source", m.Source, MaxString) {
			clean := path.Clean(m.Source)
			switch {
			case m.Source == "":
				v.add(q+".source", "is required: a directory under the task directory (relative), or an absolute host path the node allows")
			case !path.IsAbs(m.Source) && (clean == ".." || strings.HasPrefix(clean, "../")):
				v.add(q+".source", "%s leaves the task directory; give a relative path under it, or an absolute host path", quote(m.Source))
			}
		}
		if v.length(q+".target", m.Target, MaxString) {
			target := path.Clean(m.Target)
			switch {
			case !path.IsAbs(m.Target) || target == "/":
				v.add(q+".target", "%s must be an absolute path other than / (the task directory is the module's /)", quote(m.Target))
			case targets[target] != "":
				v.add(q+".target", "mounts onto %s, as %s already does", target, targets[target])
			default:
				targets[target] = q
			}
		}
	}
	for i, port := range c.Ports[:min(len(c.Ports), MaxPorts)] {
		if port.To != 0 {
			v.add(index(cp+".ports", i)+".to", "must be left out for the wasm driver: the module is handed a listener on the host port itself (GANTRY_LISTEN_FD_%s)", strings.ToUpper(strings.ReplaceAll(port.Name, "-", "_")))
		}
	}
}

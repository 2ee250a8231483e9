package compose

import "github.com/gantryhq/gantry/internal/api"

// Extension is the service-level extension key for what only Gantry can
// do: the GPU forms Compose has no words for (a MIG profile, a fractional
// share, a model), and a service's priority.
//
//	x-gantry:
//	  gpu: {mig: 3g.40gb}                      # or {share: {milli: 500, memory: 8192}}, or {count: 1, model: "H100*"}
//	  priority: 70
const Extension = "x-gantry"

// Extras is the value of the x-gantry key of one service.
type Extras struct {
	GPU      *api.GPURequest `yaml:"gpu,omitempty" json:"gpu,omitempty"`
	Priority *int            `yaml:"priority,omitempty" json:"priority,omitempty"`
}

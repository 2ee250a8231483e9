package state

import (
	"slices"
	"strconv"

	"github.com/gantryhq/gantry/internal/api"
)

// maxShapes bounds how many distinct resource shapes the view shares; past
// it, new shapes are kept per allocation as before.
const maxShapes = 4096

// shapes shares the Resources maps of allocations that hold the same plain
// resources (CPU, memory and disk per task; no ports, no GPU): the
// thousand replicas of a group then hold one map between them instead of
// a thousand. The view is never written in place (a change clones first),
// so sharing is safe.
type shapes map[string]map[string]*api.AllocatedResources

// share returns the view's map equal to r, or r itself, remembered, when
// it is the first of its shape.
func (sh shapes) share(r map[string]*api.AllocatedResources) map[string]*api.AllocatedResources {
	if len(r) == 0 || len(r) > 8 {
		return r
	}
	var names [8]string
	n := 0
	for name, res := range r {
		if res == nil || len(res.Ports) > 0 || res.GPU != nil {
			return r
		}
		names[n] = name
		n++
	}
	slices.Sort(names[:n])
	var buf [256]byte
	key := buf[:0]
	for _, name := range names[:n] {
		res := r[name]
		key = append(key, name...)
		key = append(key, 0)
		key = strconv.AppendInt(key, int64(res.CPU), 10)
		key = append(key, ',')
		key = strconv.AppendInt(key, int64(res.Memory), 10)
		key = append(key, ',')
		key = strconv.AppendInt(key, int64(res.Disk), 10)
		key = append(key, 0)
	}
	if got, ok := sh[string(key)]; ok {
		return got
	}
	if len(sh) < maxShapes {
		sh[string(key)] = r
	}
	return r
}

package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/state/codec/pb"
	"google.golang.org/protobuf/proto"
)

// Version is the compact allocation format this release writes, and the
// highest it reads. Its value is the first byte of every compact value,
// which JSON can never start with (a JSON value starts with '{', '[',
// '"', a digit, a letter or white space). Version 1 is a protocol
// buffers pb.Allocation after that byte. Fields are only ever added to
// it; a change that a reader of version 1 could not skip gets a new
// version. Servers advertise the version they read so that none writes a
// form another server cannot read.
const Version = 1

const formatV1 byte = Version

// ErrUnknownFormat is returned by DecodeAllocation for a value that is
// neither JSON nor a compact form this release knows: it was written by
// a newer Gantry (downgrading after a newer release wrote its own form is
// not supported), or it is not an allocation at all.
var ErrUnknownFormat = errors.New("allocation is stored in a format this release does not know (written by a newer Gantry?)")

// IsJSON reports whether b is an allocation in the old JSON form.
func IsJSON(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c == '{' || c == 'n' // an object, or null
	}
	return false
}

// EncodeAllocation returns a in the compact form.
func EncodeAllocation(a *api.Allocation) ([]byte, error) {
	m := toPB(a)
	b := make([]byte, 1, 1+proto.Size(m))
	b[0] = formatV1
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, m)
	if err != nil {
		return nil, fmt.Errorf("encode allocation %s: %w", a.ID, err)
	}
	return b, nil
}

// DecodeAllocation fills a from b, in either the compact form or JSON.
// a should be zero: fields absent from b are left as they are.
func DecodeAllocation(b []byte, a *api.Allocation) error {
	if len(b) > 0 && b[0] == formatV1 {
		var m pb.Allocation
		if err := proto.Unmarshal(b[1:], &m); err != nil {
			return fmt.Errorf("decode allocation (compact form v1): %w", err)
		}
		fromPB(&m, a)
		return nil
	}
	if IsJSON(b) {
		if err := json.Unmarshal(b, a); err != nil {
			return fmt.Errorf("decode allocation (JSON): %w", err)
		}
		return nil
	}
	if len(b) == 0 {
		return fmt.Errorf("decode allocation: empty value: %w", ErrUnknownFormat)
	}
	return fmt.Errorf("decode allocation: first byte %#02x: %w", b[0], ErrUnknownFormat)
}

// str is s as a protocol buffers string field takes it: valid UTF-8.
// Invalid bytes become U+FFFD, as the JSON form always did with them.
func str(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func strs(ss []string) []string {
	for i, s := range ss {
		if !utf8.ValidString(s) {
			out := make([]string, len(ss))
			copy(out, ss[:i])
			for j := i; j < len(ss); j++ {
				out[j] = str(ss[j])
			}
			return out
		}
	}
	return ss
}

func toTime(t time.Time) *pb.Time {
	if t.IsZero() {
		return nil
	}
	return &pb.Time{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())}
}

func fromTime(t *pb.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return time.Unix(t.Seconds, int64(t.Nanos)).UTC()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func toPB(a *api.Allocation) *pb.Allocation {
	m := &pb.Allocation{
		Id: str(a.ID), Namespace: str(a.Namespace), Job: str(a.Job), JobVersion: a.JobVersion, Group: str(a.Group),
		Index: int64(a.Index), Priority: int64(a.Priority), NodeId: str(a.NodeID), NodeName: str(a.NodeName), EvalId: str(a.EvalID),
		DesiredStatus: str(a.DesiredStatus), DesiredReason: str(a.DesiredReason), ClientStatus: str(a.ClientStatus),
		ClientReason: str(a.ClientReason), Health: str(a.Health),
		PreviousAlloc: str(a.PreviousAlloc), DeploymentId: str(a.DeploymentID), Canary: a.Canary,
		Reschedules: int64(a.Reschedules), Move: str(a.Move),
		CreateTime: toTime(a.CreateTime), ModifyTime: toTime(a.ModifyTime), ModifyIndex: a.ModifyIndex,
		ResourcesEmpty: a.Resources != nil && len(a.Resources) == 0, JobSubmitTime: toTime(a.JobSubmitTime),
	}
	if len(a.Resources) > 0 {
		m.Resources = make([]*pb.TaskResources, 0, len(a.Resources))
		for _, task := range sortedKeys(a.Resources) {
			m.Resources = append(m.Resources, resourcesToPB(task, a.Resources[task]))
		}
	}
	if len(a.TaskStates) > 0 {
		m.TaskStates = make([]*pb.TaskState, 0, len(a.TaskStates))
		for _, task := range sortedKeys(a.TaskStates) {
			m.TaskStates = append(m.TaskStates, taskStateToPB(task, a.TaskStates[task]))
		}
	}
	return m
}

func resourcesToPB(task string, r *api.AllocatedResources) *pb.TaskResources {
	m := &pb.TaskResources{Task: str(task)}
	if r == nil {
		return m
	}
	m.Cpu, m.Memory, m.Disk = int64(r.CPU), int64(r.Memory), int64(r.Disk)
	if len(r.Ports) > 0 {
		m.Ports = make([]*pb.Port, len(r.Ports))
		for i, p := range r.Ports {
			m.Ports[i] = &pb.Port{Name: str(p.Name), Host: int64(p.Host), To: int64(p.To)}
		}
	}
	if g := r.GPU; g != nil {
		m.Gpu = &pb.GPU{Devices: strs(g.Devices)}
		if g.MIG != nil {
			m.Gpu.Mig = &pb.MIG{Gpu: str(g.MIG.GPU), Profile: str(g.MIG.Profile), Start: int64(g.MIG.Start), Size: int64(g.MIG.Size),
				InstanceUuid: str(g.MIG.InstanceUUID), Create: g.MIG.Create}
		}
		if g.Share != nil {
			m.Gpu.Share = &pb.Share{Gpu: str(g.Share.GPU), Milli: int64(g.Share.Milli), Memory: int64(g.Share.Memory), Enforce: g.Share.Enforce}
		}
	}
	return m
}

func taskStateToPB(task string, s *api.TaskState) *pb.TaskState {
	m := &pb.TaskState{Task: str(task)}
	if s == nil {
		return m
	}
	m.State, m.Failed, m.ExitCode, m.Restarts, m.Health = str(s.State), s.Failed, int64(s.ExitCode), int64(s.Restarts), str(s.Health)
	m.StartedAt, m.FinishedAt = toTime(s.StartedAt), toTime(s.FinishedAt)
	if len(s.Events) > 0 {
		m.Events = make([]*pb.TaskEvent, len(s.Events))
		for i, e := range s.Events {
			m.Events[i] = &pb.TaskEvent{Time: toTime(e.Time), Type: str(e.Type), Message: str(e.Message)}
		}
	}
	return m
}

func fromPB(m *pb.Allocation, a *api.Allocation) {
	a.ID, a.Namespace, a.Job, a.JobVersion, a.Group = m.Id, m.Namespace, m.Job, m.JobVersion, m.Group
	a.JobSubmitTime = fromTime(m.JobSubmitTime)
	a.Index, a.Priority = int(m.Index), int(m.Priority)
	a.NodeID, a.NodeName, a.EvalID = m.NodeId, m.NodeName, m.EvalId
	a.DesiredStatus, a.DesiredReason = m.DesiredStatus, m.DesiredReason
	a.ClientStatus, a.ClientReason, a.Health = m.ClientStatus, m.ClientReason, m.Health
	a.PreviousAlloc, a.DeploymentID, a.Canary = m.PreviousAlloc, m.DeploymentId, m.Canary
	a.Reschedules, a.Move = int(m.Reschedules), m.Move
	a.CreateTime, a.ModifyTime, a.ModifyIndex = fromTime(m.CreateTime), fromTime(m.ModifyTime), m.ModifyIndex
	if len(m.Resources) > 0 || m.ResourcesEmpty {
		a.Resources = make(map[string]*api.AllocatedResources, len(m.Resources))
	}
	for _, r := range m.Resources {
		a.Resources[r.Task] = resourcesFromPB(r)
	}
	if len(m.TaskStates) > 0 {
		a.TaskStates = make(map[string]*api.TaskState, len(m.TaskStates))
	}
	for _, s := range m.TaskStates {
		a.TaskStates[s.Task] = taskStateFromPB(s)
	}
}

func resourcesFromPB(m *pb.TaskResources) *api.AllocatedResources {
	r := &api.AllocatedResources{CPU: int(m.Cpu), Memory: int(m.Memory), Disk: int(m.Disk)}
	if len(m.Ports) > 0 {
		r.Ports = make([]api.AllocatedPort, len(m.Ports))
		for i, p := range m.Ports {
			r.Ports[i] = api.AllocatedPort{Name: p.Name, Host: int(p.Host), To: int(p.To)}
		}
	}
	if g := m.Gpu; g != nil {
		r.GPU = &api.AllocatedGPU{Devices: g.Devices}
		if g.Mig != nil {
			r.GPU.MIG = &api.MIGAssignment{GPU: g.Mig.Gpu, Profile: g.Mig.Profile, Start: int(g.Mig.Start), Size: int(g.Mig.Size),
				InstanceUUID: g.Mig.InstanceUuid, Create: g.Mig.Create}
		}
		if g.Share != nil {
			r.GPU.Share = &api.ShareAssignment{GPU: g.Share.Gpu, Milli: int(g.Share.Milli), Memory: int(g.Share.Memory), Enforce: g.Share.Enforce}
		}
	}
	return r
}

func taskStateFromPB(m *pb.TaskState) *api.TaskState {
	s := &api.TaskState{State: m.State, Failed: m.Failed, ExitCode: int(m.ExitCode), Restarts: int(m.Restarts), Health: m.Health,
		StartedAt: fromTime(m.StartedAt), FinishedAt: fromTime(m.FinishedAt)}
	if len(m.Events) > 0 {
		s.Events = make([]api.TaskEvent, len(m.Events))
		for i, e := range m.Events {
			s.Events[i] = api.TaskEvent{Time: fromTime(e.Time), Type: e.Type, Message: e.Message}
		}
	}
	return s
}

package ui

import (
	"fmt"
	"hash/fnv"
	"html"
	"html/template"
	"slices"
	"sort"
	"strings"

	"github.com/gantryhq/gantry/internal/api"
	"github.com/gantryhq/gantry/internal/gpu"
)

// Kinds of pieces of a GPU.
const (
	PieceWhole        = "whole"         // the whole GPU, held by one allocation
	PieceMIG          = "mig"           // a MIG instance held by an allocation
	PieceFreeInstance = "free-instance" // a MIG instance that exists and nobody holds
	PieceShare        = "share"         // a fraction of the GPU's compute and memory
)

// Piece is one part of a GPU and who holds it.
type Piece struct {
	Kind    string
	Start   int // first memory slice (MIG)
	Size    int // memory slices (MIG)
	Profile string
	Milli   int // thousandths of the GPU's compute (shares)
	Memory  int // MiB (shares)

	Namespace, Job, Group, Task string
	Alloc, AllocName, Status    string

	// MoveTo, when set, says that GPU defragmentation proposes to move
	// this piece's allocation there ("gpu-b GPU 0"), and MoveReason why.
	MoveTo, MoveReason string
}

// Label is the piece's short text: its holder's job, or "free".
func (p Piece) Label() string {
	if p.Kind == PieceFreeInstance {
		return "free"
	}
	return p.Job
}

// Detail is what the piece is, in words.
func (p Piece) Detail() string {
	switch p.Kind {
	case PieceMIG, PieceFreeInstance:
		return fmt.Sprintf("%s at slices %d–%d", p.Profile, p.Start, p.Start+p.Size-1)
	case PieceShare:
		return fmt.Sprintf("%d‰ compute, %d MiB", p.Milli, p.Memory)
	}
	return "whole GPU"
}

// GPUView is one GPU of a node with everything placed on it.
type GPUView struct {
	Index           int
	UUID, Model     string
	Memory          int // MiB
	MIG, MIGManaged bool
	Slices          int // memory slices of the MIG geometry
	SharingEnforced bool
	Unhealthy       bool
	Reason          string
	Pieces          []Piece
	// Incoming are the moves GPU defragmentation proposes onto this GPU
	// that have not started yet.
	Incoming []Incoming
}

// Incoming is a proposed move onto a GPU: the replica, where it comes
// from, its share (milli, 1000 for a whole GPU) and why.
type Incoming struct {
	Namespace, Job, Alloc, AllocName string
	From                             string // "gpu-a GPU 0"
	Milli                            int
	Reason                           string
}

// Summary is the incoming move in words.
func (m Incoming) Summary() string {
	what := fmt.Sprintf("%d‰", m.Milli)
	if m.Milli >= 1000 {
		what = "whole GPU"
	}
	return fmt.Sprintf("moving in: %s (%s) from %s", m.AllocName, what, m.From)
}

// MarkMoves marks the moves of a proposed GPU defragmentation plan on the
// GPU map of node (views from BuildGPUMap): the piece each move takes
// away is marked as moving out, the GPU it goes to lists it as moving in.
// started holds the allocations whose replacement is already placed: their
// destination shows the replacement itself, so only the source is marked.
// Moves of allocations the map does not hold any more are done or void
// and are not shown.
func MarkMoves(views []GPUView, node string, moves []api.DefragMove, started map[string]bool) {
	for _, m := range moves {
		if m.FromNode == node {
			for i := range views {
				if !slices.Contains(m.FromGPUs, views[i].Index) {
					continue
				}
				for k := range views[i].Pieces {
					if pc := &views[i].Pieces[k]; pc.Alloc == m.Alloc {
						pc.MoveTo, pc.MoveReason = m.ToNode+" "+gpuWords(m.ToGPUs), m.Reason
					}
				}
			}
		}
		if m.ToNode == node && !started[m.Alloc] {
			for i := range views {
				if slices.Contains(m.ToGPUs, views[i].Index) {
					views[i].Incoming = append(views[i].Incoming, Incoming{Namespace: m.Namespace, Job: m.Job, Alloc: m.Alloc, AllocName: m.Name,
						From: m.FromNode + " " + gpuWords(m.FromGPUs), Milli: m.Milli, Reason: m.Reason})
				}
			}
		}
	}
}

func gpuWords(idx []int) string {
	var s []string
	for _, i := range idx {
		s = append(s, fmt.Sprint(i))
	}
	if len(s) == 1 {
		return "GPU " + s[0]
	}
	return "GPUs " + strings.Join(s, ",")
}

// UsedMilli is the compute that shares hold.
func (g GPUView) UsedMilli() int {
	n := 0
	for _, p := range g.Pieces {
		if p.Kind == PieceShare {
			n += p.Milli
		}
	}
	return n
}

// BuildGPUMap lays out every GPU of the node with the pieces the node's
// live allocations hold (allocations of other nodes, and terminal ones,
// are ignored) and the MIG instances nobody holds.
func BuildGPUMap(n *api.Node, allocs []*api.Allocation) []GPUView {
	out := make([]GPUView, 0, len(n.GPUs))
	for _, d := range n.GPUs {
		v := GPUView{Index: d.Index, UUID: d.UUID, Model: d.Model, Memory: d.Memory, MIG: d.MIGEnabled, MIGManaged: d.MIGManaged,
			SharingEnforced: d.SharingEnforced, Unhealthy: d.Unhealthy, Reason: d.HealthReason, Slices: 8}
		if g := gpu.GeometryFor(d.Model, d.Memory); g != nil {
			v.Slices = g.MemorySlices
		}
		held := map[int]bool{}      // MIG starts held
		heldID := map[string]bool{} // MIG instance UUIDs held
		for _, a := range allocs {
			if a.NodeID != n.ID || a.ClientTerminal() {
				continue
			}
			tasks := make([]string, 0, len(a.Resources))
			for t := range a.Resources {
				tasks = append(tasks, t)
			}
			sort.Strings(tasks)
			for _, t := range tasks {
				r := a.Resources[t]
				if r == nil || r.GPU == nil {
					continue
				}
				p := Piece{Namespace: a.Namespace, Job: a.Job, Group: a.Group, Task: t, Alloc: a.ID, AllocName: a.Name(), Status: a.ClientStatus}
				switch g := r.GPU; {
				case g.MIG != nil && g.MIG.GPU == d.UUID:
					p.Kind, p.Start, p.Size, p.Profile = PieceMIG, g.MIG.Start, g.MIG.Size, g.MIG.Profile
					held[g.MIG.Start] = true
					if g.MIG.InstanceUUID != "" {
						heldID[g.MIG.InstanceUUID] = true
					}
				case g.Share != nil && g.Share.GPU == d.UUID:
					p.Kind, p.Milli, p.Memory = PieceShare, g.Share.Milli, g.Share.Memory
				case contains(g.Devices, d.UUID):
					p.Kind = PieceWhole
				default:
					continue
				}
				v.Pieces = append(v.Pieces, p)
			}
		}
		for _, m := range d.MIGInstances {
			if heldID[m.UUID] || held[m.Start] {
				continue
			}
			v.Pieces = append(v.Pieces, Piece{Kind: PieceFreeInstance, Start: m.Start, Size: m.Size, Profile: m.Profile})
		}
		sort.SliceStable(v.Pieces, func(i, j int) bool {
			a, b := v.Pieces[i], v.Pieces[j]
			if a.Start != b.Start {
				return a.Start < b.Start
			}
			return a.AllocName < b.AllocName
		})
		out = append(out, v)
	}
	return out
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// JobColour is the fill of a job's pieces: the same job, the same colour.
func JobColour(namespace, job string) string {
	h := fnv.New32a()
	h.Write([]byte(namespace + "/" + job))
	return JobColours[h.Sum32()%uint32(len(JobColours))]
}

const (
	gpuW    = 600
	gpuPad  = 10
	headH   = 44
	migH    = 64
	numH    = 16
	shareH  = 30
	labelCh = 7  // approximate width of a character at the map's font size
	moveH   = 26 // a line per proposed incoming move
)

func fit(s string, width float64) string {
	n := int(width/labelCh) - 1
	if n < 1 {
		return ""
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n == 1 {
		return "…"
	}
	return string(r[:n-1]) + "…"
}

// GPUMapSVG draws one GPU: its MIG memory slices with every instance at
// its position, or its compute and memory with every share, or the one
// allocation holding it whole; each piece labelled with its job and
// linked to its allocation. An unhealthy GPU is outlined in red and says
// why.
func GPUMapSVG(g GPUView) template.HTML {
	var b strings.Builder
	inner := float64(gpuW - 2*gpuPad)
	h := headH + gpuPad
	switch {
	case g.MIG:
		h += migH + numH
	case g.UsedMilli() > 0:
		h += 2*shareH + 8
	default:
		h += migH
	}
	h += moveH * len(g.Incoming)
	p := Palette
	title := fmt.Sprintf("GPU %d, %s, %d MiB", g.Index, g.Model, g.Memory)
	state := "healthy"
	if g.Unhealthy {
		state = "UNHEALTHY: " + g.Reason
	}
	mode := "whole GPUs"
	switch {
	case g.MIG && g.MIGManaged:
		mode = fmt.Sprintf("MIG, %d memory slices, instances made on demand", g.Slices)
	case g.MIG:
		mode = fmt.Sprintf("MIG, %d memory slices", g.Slices)
	case g.UsedMilli() > 0 && g.SharingEnforced:
		mode = "shared, limits enforced by MPS"
	case g.UsedMilli() > 0:
		mode = "shared"
	}
	var pieces []string
	for _, pc := range g.Pieces {
		d := pc.Label() + " " + pc.Detail()
		if pc.MoveTo != "" {
			d += ", proposed to move to " + pc.MoveTo
		}
		pieces = append(pieces, d)
	}
	for _, m := range g.Incoming {
		pieces = append(pieces, "proposed "+m.Summary())
	}
	desc := title + "; " + state + "; " + mode
	if len(pieces) > 0 {
		desc += "; " + strings.Join(pieces, "; ")
	} else {
		desc += "; nothing placed"
	}
	unhealthy := ""
	if g.Unhealthy {
		unhealthy = ` data-unhealthy="true"`
	}
	fmt.Fprintf(&b, `<svg class="gpu" viewBox="0 0 %d %d" width="%d" height="%d" role="group" aria-label="%s" data-gpu-uuid="%s" data-gpu-index="%d" data-mig="%v"%s font-size="12" font-family="system-ui, sans-serif">`,
		gpuW, h, gpuW, h, html.EscapeString(desc), html.EscapeString(g.UUID), g.Index, g.MIG, unhealthy)
	fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(desc))
	outline, width := p["border"], 1
	if g.Unhealthy {
		outline, width = p["bad-line"], 3
	}
	fmt.Fprintf(&b, `<rect x="1.5" y="1.5" width="%d" height="%d" rx="6" fill="%s" stroke="%s" stroke-width="%d"/>`, gpuW-3, h-3, p["surface"], outline, width)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-weight="600" fill="%s">%s</text>`, gpuPad, p["text"], html.EscapeString(fit(title, inner*0.62)))
	fmt.Fprintf(&b, `<text x="%d" y="36" fill="%s">%s</text>`, gpuPad, p["muted"], html.EscapeString(fit(mode, inner*0.62)))
	if g.Unhealthy {
		fmt.Fprintf(&b, `<rect x="%.0f" y="8" width="%.0f" height="30" rx="4" fill="%s"/>`, gpuPad+inner*0.63, inner*0.37, p["bad-bg"])
		fmt.Fprintf(&b, `<text x="%.0f" y="28" font-weight="600" fill="%s" data-health="unhealthy">%s</text>`, gpuPad+inner*0.63+6, p["bad-text"], html.EscapeString(fit("✕ "+state, inner*0.37-8)))
	} else {
		fmt.Fprintf(&b, `<text x="%d" y="28" text-anchor="end" fill="%s" data-health="healthy">healthy</text>`, gpuW-gpuPad, p["ok-text"])
	}
	top := float64(headH)
	piece := func(pc Piece, x, y, w, hh float64, lines ...string) {
		fill, stroke, dash, text := JobColour(pc.Namespace, pc.Job), p["slice-grid"], "", p["text"]
		if pc.Kind == PieceFreeInstance {
			fill, dash, text = p["slice-free"], ` stroke-dasharray="4 3"`, p["muted"]
		}
		attrs := fmt.Sprintf(` class="piece" data-kind="%s" data-job="%s" data-alloc="%s"`, pc.Kind, html.EscapeString(pc.Job), html.EscapeString(pc.Alloc))
		if pc.Kind == PieceMIG || pc.Kind == PieceFreeInstance {
			attrs += fmt.Sprintf(` data-start="%d" data-size="%d" data-profile="%s"`, pc.Start, pc.Size, html.EscapeString(pc.Profile))
		}
		if pc.Kind == PieceShare {
			attrs += fmt.Sprintf(` data-milli="%d" data-memory="%d"`, pc.Milli, pc.Memory)
		}
		if pc.MoveTo != "" {
			// A proposed move: outlined in the warning colour, dashed.
			attrs += fmt.Sprintf(` data-move="out" data-move-to="%s"`, html.EscapeString(pc.MoveTo))
			stroke, dash = p["warn-text"], ` stroke-width="2" stroke-dasharray="6 3"`
		}
		if pc.Alloc != "" {
			fmt.Fprintf(&b, `<a href="/ui/allocations/%s"%s>`, html.EscapeString(pc.Alloc), attrs)
		} else {
			fmt.Fprintf(&b, `<g%s>`, attrs)
		}
		full := pc.Label() + ": " + pc.Detail()
		if pc.AllocName != "" {
			full += " (" + pc.AllocName + ", " + pc.Status + ")"
		}
		if pc.MoveTo != "" {
			full += "; moving out to " + pc.MoveTo + ": " + pc.MoveReason
		}
		fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(full))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" rx="3" fill="%s" stroke="%s"%s/>`, x+1, y, w-2, hh, fill, stroke, dash)
		for i, l := range lines {
			weight := ""
			if i == 0 {
				weight = ` font-weight="600"`
			}
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s"%s>%s</text>`, x+6, y+16+float64(i)*15, text, weight, html.EscapeString(fit(l, w-8)))
		}
		if pc.Alloc != "" {
			b.WriteString(`</a>`)
		} else {
			b.WriteString(`</g>`)
		}
	}
	switch {
	case g.MIG:
		col := inner / float64(max(g.Slices, 1))
		for i := 0; i < g.Slices; i++ {
			x := float64(gpuPad) + float64(i)*col
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="%s" stroke="%s" stroke-dasharray="2 2" aria-hidden="true"/>`, x, top, col, migH, p["bg"], p["slice-grid"])
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" fill="%s" aria-hidden="true">%d</text>`, x+col/2, top+migH+13, p["muted"], i)
		}
		for _, pc := range g.Pieces {
			if pc.Kind != PieceMIG && pc.Kind != PieceFreeInstance {
				continue
			}
			second := pc.Profile
			if pc.AllocName != "" {
				second += " · " + pc.AllocName
			}
			piece(pc, float64(gpuPad)+float64(pc.Start)*col, top+2, float64(pc.Size)*col, migH-4, pc.Label(), second, pc.Status)
		}
	case g.UsedMilli() > 0:
		for row, what := range []string{"compute", "memory"} {
			y := top + float64(row)*(shareH+4)
			fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%.1f" height="%d" fill="%s" stroke="%s"/>`, gpuPad, y, inner, shareH, p["bg"], p["slice-grid"])
			x := float64(gpuPad)
			for _, pc := range g.Pieces {
				if pc.Kind != PieceShare {
					continue
				}
				frac := float64(pc.Milli) / 1000
				label := fmt.Sprintf("%s %d‰", pc.Job, pc.Milli)
				if what == "memory" {
					frac = float64(pc.Memory) / float64(max(g.Memory, 1))
					label = fmt.Sprintf("%s %d MiB", pc.Job, pc.Memory)
				}
				w := inner * min(frac, 1)
				piece(pc, x, y, w, shareH, label)
				x += w
			}
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="%s">%s</text>`, gpuW-gpuPad-4, y+19, p["muted"], what)
		}
	default:
		var whole *Piece
		for i := range g.Pieces {
			if g.Pieces[i].Kind == PieceWhole {
				whole = &g.Pieces[i]
			}
		}
		if whole != nil {
			piece(*whole, gpuPad, top+2, inner, migH-4, whole.Label(), "whole GPU · "+whole.AllocName, whole.Status)
		} else {
			fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%.1f" height="%d" rx="3" fill="%s" stroke="%s" stroke-dasharray="4 3"/>`, gpuPad, top+2, inner, migH-4, p["slice-free"], p["slice-grid"])
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">free</text>`, gpuPad+6.0, top+20, p["muted"])
		}
	}
	y := float64(h - gpuPad - moveH*len(g.Incoming))
	for _, m := range g.Incoming {
		full := m.Summary() + ": " + m.Reason
		fmt.Fprintf(&b, `<g class="move" data-move="in" data-alloc="%s" data-job="%s"><title>%s</title>`, html.EscapeString(m.Alloc), html.EscapeString(m.Job), html.EscapeString(full))
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%.1f" height="%d" rx="3" fill="%s" stroke="%s" stroke-dasharray="6 3"/>`, gpuPad, y+2, inner, moveH-4, p["warn-bg"], p["warn-text"])
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="%s">%s</text>`, gpuPad+6.0, y+17, p["warn-text"], html.EscapeString(fit("→ "+full, inner-8)))
		b.WriteString(`</g>`)
		y += moveH
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// MoveLine is one proposed move on a node's GPU map, as the node page
// lists it under the map: Dir is "out" (the piece leaves for Peer) or
// "in" (it comes from Peer).
type MoveLine struct {
	GPU                    int
	Dir                    string
	Alloc, AllocName, Peer string
	Reason                 string
}

// MoveLines lists the proposed moves marked on views (MarkMoves).
func MoveLines(views []GPUView) []MoveLine {
	var out []MoveLine
	for _, g := range views {
		for _, pc := range g.Pieces {
			if pc.MoveTo != "" {
				out = append(out, MoveLine{GPU: g.Index, Dir: "out", Alloc: pc.Alloc, AllocName: pc.AllocName, Peer: pc.MoveTo, Reason: pc.MoveReason})
			}
		}
		for _, m := range g.Incoming {
			out = append(out, MoveLine{GPU: g.Index, Dir: "in", Alloc: m.Alloc, AllocName: m.AllocName, Peer: m.From, Reason: m.Reason})
		}
	}
	return out
}

// Package ui owns Gantry's web UI: the page shell, stylesheet and script
// embedded in the binary (go:embed, nothing fetched from the internet),
// the HTML templates of each page, and the pictures the server draws in
// Go: SVG line charts of the metrics history (Chart) and the GPU map of a
// node (BuildGPUMap, GPUMapSVG), every MIG instance at its memory slices
// and every fractional share, labelled with the job that holds it.
//
// The pages (views.go, pages.go): overview, jobs, job, allocation, nodes,
// node, and the lists of allocations, evaluations (alike ones grouped:
// GroupEvals), deployments, services, events, queues, audit findings and
// the topology of the cluster (TopologySVG: every node's CPU, memory and
// GPUs filled by its allocations). Filters are GET forms, and the handlers
// can put a page into the shell (ShellWith), so every page reads without
// JavaScript.
//
// It does no I/O, reads no clock and holds no HTTP handlers: the
// handlers of internal/ui/web gather the cluster's state into the page
// types of views.go, under the caller's ACL, and render them with Render.
// The browser asks for each page as an HTML fragment (with its token in a
// header, never a cookie) and swaps it in when the event stream says
// something it shows has changed.
//
// The palette (palette.go) is data: the stylesheet's colours come from it
// and a test checks every text/background pair against WCAG's 4.5:1.
package ui

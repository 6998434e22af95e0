// Package layering enforces the import rules of docs/architecture.md
// (../shared/STYLE.md: imports point downwards) on the real package graph,
// from `go list`, and keeps the graph printed in docs/architecture.md equal
// to it.
package layering

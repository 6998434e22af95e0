package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/dmsnap/dmsnap/cow"
)

func newDiffCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:      "diff",
		Usage:     "list the origin ranges changed since a snapshot was taken, from its COW store",
		ArgsUsage: "[POOL/]SNAP|DEVICE|FILE",
		Description: cowSourceHelp + "\n\n" +
			"Each exception in the store is an origin chunk that changed (or was written\n" +
			"through the snapshot) since the snapshot was taken. Adjacent chunks are\n" +
			"merged into extents, printed as byte offset and length on the origin and\n" +
			"as an inclusive chunk range. A fresh store has no changes, if it is known to\n" +
			"be a snapshot's COW: a source without snapshot magic that no snapshot uses\n" +
			"(zeros, a PV) is an error, not a false \"no changes\". An invalidated store is\n" +
			"an error: its changes are unknown.\n\n" +
			"--bitmap FILE writes one bit per origin chunk (chunk c is bit c%8 of byte\n" +
			"c/8, least significant bit first; 1 = changed), ceil(chunks/8) bytes with\n" +
			"the unused high bits of the last byte zero. It needs --origin-size.\n\n" +
			exitStatusHelp,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bitmap", Usage: "also write the changed chunks as a bitset to `FILE`"},
			&cli.StringFlag{Name: "origin-size", Usage: "origin `SIZE` (e.g. 64M, 131072s): sizes the bitmap and checks the store"},
			&cli.UintFlag{Name: "chunk-size", Usage: "expected chunk size in `SECTORS` (a mismatch is an error)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErrorf("diff needs exactly one DEVICE|FILE, got %d arguments", c.NArg())
			}
			opts := diffOptions{
				Path: c.Args().First(), Snapshot: !isPathArg(c.Args().First()), JSON: gopts.JSON, Bitmap: c.String("bitmap"),
				OriginSize: c.String("origin-size"), ChunkSectors: c.Uint("chunk-size"),
			}
			if err := resolveCowOptions(gopts, &opts.Path, &opts.ChunkSectors, &opts.OriginSize); err != nil {
				return err
			}
			return runDiff(c.Context, opts, gopts)
		},
	}
}

type diffOptions struct {
	Path         string
	Snapshot     bool // Path was resolved from [POOL/]SNAP
	JSON         bool
	Bitmap       string
	OriginSize   string
	ChunkSectors uint
}

type jsonDiffExtent struct {
	OffsetBytes uint64 `json:"offset_bytes"`
	LengthBytes uint64 `json:"length_bytes"`
	StartChunk  uint64 `json:"start_chunk"`
	Chunks      uint64 `json:"chunks"`
}

type jsonDiffBitmap struct {
	Path  string `json:"path"`
	Bits  uint64 `json:"bits"`
	Bytes uint64 `json:"bytes"`
}

// jsonDiff is the `diff --json` schema (docs/formats.md).
type jsonDiff struct {
	Path            string           `json:"path"`
	Live            bool             `json:"live"`
	InUseBy         []string         `json:"in_use_by"`
	Fresh           bool             `json:"fresh"`
	ChunkSectors    uint32           `json:"chunk_sectors"`
	ChunkBytes      uint64           `json:"chunk_bytes"`
	OriginSizeBytes int64            `json:"origin_size_bytes,omitempty"`
	ChangedChunks   uint64           `json:"changed_chunks"`
	ChangedBytes    uint64           `json:"changed_bytes"`
	Extents         []jsonDiffExtent `json:"extents"`
	Bitmap          *jsonDiffBitmap  `json:"bitmap,omitempty"`
}

func runDiff(_ context.Context, opts diffOptions, gopts *globalOptions) error {
	chunk, err := cowChunkSectors(opts.ChunkSectors)
	if err != nil {
		return err
	}
	var originBytes int64
	if opts.OriginSize != "" {
		if originBytes, err = parseOriginSize(opts.OriginSize); err != nil {
			return err
		}
	}
	if opts.Bitmap != "" && originBytes == 0 {
		return usageErrorf("--bitmap needs --origin-size: the bitmap has one bit per origin chunk")
	}
	src, err := openCowSource(opts.Path)
	if err != nil {
		return err
	}
	defer src.Close()
	s, err := openCowStore(src, cow.Decoder{ExpectChunkSectors: chunk})
	if err != nil {
		return err
	}
	if s.Fresh() && !opts.Snapshot && !src.knownCOW() {
		// "No changes" is only true of a snapshot's COW: anything else
		// without magic (a zeroed file, an unused disk) would be a false
		// all-clear.
		what := "unrecognised data"
		if src.zeroHead() {
			what = "zeros"
		}
		return &cowError{fmt.Sprintf("%s: not a dm-snapshot persistent store: no snapshot magic, its first 4 KiB are %s, and no snapshot uses it; "+
			"name a snapshot as [POOL/]SNAP (or its active -cow device) to read a fresh store", opts.Path, what), cow.ErrBadMagic}
	}
	out := jsonDiff{
		Path: opts.Path, Live: src.live(), InUseBy: nonNilStrings(src.holders), Fresh: s.Fresh(),
		ChunkSectors: s.ChunkSectors(), ChunkBytes: uint64(s.ChunkSectors()) * cow.SectorSize,
		OriginSizeBytes: originBytes, ChangedChunks: uint64(s.Len()), Extents: []jsonDiffExtent{},
	}
	out.ChangedBytes = out.ChangedChunks * out.ChunkBytes
	for _, x := range s.ChangedExtents() {
		out.Extents = append(out.Extents, jsonDiffExtent{
			OffsetBytes: uint64(x.Start) * out.ChunkBytes, LengthBytes: x.Count * out.ChunkBytes,
			StartChunk: uint64(x.Start), Chunks: x.Count,
		})
	}
	if originBytes > 0 && !s.Fresh() {
		n := originChunks(originBytes, s.ChunkSectors())
		bm, err := s.Bitmap(n)
		if err != nil {
			return &cowError{fmt.Sprintf("%s: store does not fit a %d-byte origin: %v", opts.Path, originBytes, err), err}
		}
		if opts.Bitmap != "" {
			b := encodeDiffBitmap(bm)
			if err := os.WriteFile(opts.Bitmap, b, 0o644); err != nil {
				return fmt.Errorf("write bitmap: %w", err)
			}
			out.Bitmap = &jsonDiffBitmap{Path: opts.Bitmap, Bits: uint64(n), Bytes: uint64(len(b))}
		}
	} else if opts.Bitmap != "" {
		// A fresh store has no chunk size of its own: every bit is 0 for
		// any chunk size, so write the bitmap of the expected one or 4 KiB.
		c := max(chunk, 8)
		n := originChunks(originBytes, c)
		b := encodeDiffBitmap(cow.NewBitmap(n))
		if err := os.WriteFile(opts.Bitmap, b, 0o644); err != nil {
			return fmt.Errorf("write bitmap: %w", err)
		}
		out.Bitmap = &jsonDiffBitmap{Path: opts.Bitmap, Bits: uint64(n), Bytes: uint64(len(b))}
	}

	if opts.JSON {
		return writeJSON(gopts.stdout, out)
	}
	if src.live() && !gopts.Quiet {
		fmt.Fprintln(gopts.stderr, src.liveNote())
	}
	w := gopts.stdout
	if s.Fresh() {
		fmt.Fprintf(w, "%s: fresh store: no changes since the snapshot\n", opts.Path)
		return nil
	}
	fmt.Fprintf(w, "%s: %d changed chunks of %d sectors (%s) in %d extents\n",
		opts.Path, out.ChangedChunks, out.ChunkSectors, humanBytes(out.ChangedBytes), len(out.Extents))
	if len(out.Extents) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "OFFSET\tLENGTH\tCHUNKS\t")
		for _, x := range out.Extents {
			fmt.Fprintf(tw, "%d\t%d\t%d-%d\t\n", x.OffsetBytes, x.LengthBytes, x.StartChunk, x.StartChunk+x.Chunks-1)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if out.Bitmap != nil {
		fmt.Fprintf(w, "bitmap: %s (%d bits, %d bytes)\n", out.Bitmap.Path, out.Bitmap.Bits, out.Bitmap.Bytes)
	}
	return nil
}

// encodeDiffBitmap lays out b as the --bitmap file: bit c%8 of byte c/8
// is chunk c.
func encodeDiffBitmap(b *cow.Bitmap) []byte {
	out := make([]byte, (uint64(b.Len())+7)/8)
	for x := range b.Extents() {
		for c := x.Start; c < x.End(); c++ {
			out[c/8] |= 1 << (c % 8)
		}
	}
	return out
}

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dmsnap/dmsnap/cow"
	"github.com/dmsnap/dmsnap/dm"
	"github.com/dmsnap/dmsnap/internal/blockdev"
	"github.com/dmsnap/dmsnap/lvm"
)

const cowSourceHelp = `[POOL/]SNAP is a persistent snapshot of a dmsnap pool (the default pool when
POOL is omitted): its active <pool>-<snap>-cow device is read, and the chunk
size (and origin size) recorded in the pool metadata are checked against
the store. DEVICE|FILE is a COW block device or an image file of one (an
argument starting with / or ., or naming an existing file, is a path).
Reading is read-only. The supported case is an
image file or the COW of an inactive snapshot. A block device is read with
O_DIRECT, so the page cache cannot show stale metadata; if it is held by a
device-mapper device (an active snapshot), the result is prefix-consistent:
every exception shown is committed with its data, and exceptions committed
after the read are missing.`

func newCowCommand(gopts *globalOptions) *cli.Command {
	return &cli.Command{
		Name:  "cow",
		Usage: "read a dm-snapshot persistent exception store (the COW of a P/PO snapshot)",
		Subcommands: []*cli.Command{
			{
				Name:      "inspect",
				Usage:     "show a store's header, state, fill and first exceptions",
				ArgsUsage: "[POOL/]SNAP|DEVICE|FILE",
				Description: cowSourceHelp + "\n\nThe fill line prints \"<allocated>/<total> <metadata>\" in sectors, exactly as\n" +
					"the kernel's snapshot status would for this store.\n\n" +
					"An invalidated store is shown (exit 0); a store that is not one fails (exit 1).\n\n" + exitStatusHelp,
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "limit", Value: 10, Usage: "show the first `N` exceptions in on-disk order (0 none, -1 all)"},
					&cli.UintFlag{Name: "chunk-size", Usage: "expected chunk size in `SECTORS` (a mismatch is an error; sizes a fresh store)"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageErrorf("cow inspect needs exactly one DEVICE|FILE, got %d arguments", c.NArg())
					}
					opts := cowInspectOptions{
						Path: c.Args().First(), JSON: gopts.JSON,
						Limit: c.Int("limit"), ChunkSectors: c.Uint("chunk-size"),
					}
					if err := resolveCowOptions(gopts, &opts.Path, &opts.ChunkSectors, nil); err != nil {
						return err
					}
					return runCowInspect(c.Context, opts, gopts)
				},
			},
			{
				Name:      "verify",
				Usage:     "validate a store completely; exit 1 with the precise problem if it is bad",
				ArgsUsage: "[POOL/]SNAP|DEVICE|FILE",
				Description: cowSourceHelp + "\n\nChecks the header (magic, version, valid flag, chunk size), every metadata\n" +
					"area and record (new chunks inside the device and not metadata, no\n" +
					"duplicate old or new chunks) and, with --origin-size, that every old chunk\n" +
					"lies inside the origin. An invalidated store is bad. A fresh store (never\n" +
					"used) is good.\n\n" + exitStatusHelp,
				Flags: []cli.Flag{
					&cli.UintFlag{Name: "chunk-size", Usage: "expected chunk size in `SECTORS`, as the snapshot table says"},
					&cli.StringFlag{Name: "origin-size", Usage: "origin `SIZE` (e.g. 64M, 131072s); old chunks must lie inside it"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageErrorf("cow verify needs exactly one DEVICE|FILE, got %d arguments", c.NArg())
					}
					opts := cowVerifyOptions{
						Path: c.Args().First(), JSON: gopts.JSON,
						ChunkSectors: c.Uint("chunk-size"), OriginSize: c.String("origin-size"),
					}
					if err := resolveCowOptions(gopts, &opts.Path, &opts.ChunkSectors, &opts.OriginSize); err != nil {
						return err
					}
					return runCowVerify(c.Context, opts, gopts)
				},
			},
		},
	}
}

// cowChunkSectors checks a --chunk-size value (0 means unset).
func cowChunkSectors(n uint) (uint32, error) {
	if n == 0 {
		return 0, nil
	}
	if n > uint(cow.MaxChunkSectors) || cow.CheckChunkSectors(uint32(n)) != nil {
		return 0, usageErrorf("--chunk-size %d: must be a power of two from 1 to %d sectors", n, cow.MaxChunkSectors)
	}
	return uint32(n), nil
}

// cowSource is an opened store: a block device (read with O_DIRECT when
// the device allows it) or an image file, and the devices holding it.
type cowSource struct {
	*blockdev.Reader
	holders []string // dm devices holding a block device
}

// openCowSource opens path read-only. A block device is read with
// O_DIRECT, falling back to buffered reads (Direct false, which inspect
// and verify report) if the device refuses it.
func openCowSource(path string) (*cowSource, error) { return openSource(path, false) }

// openCowSourceDirect is openCowSource for ingest, which must not fall
// back: a buffered read can return a stale page cache of the device and so
// miss chunks the kernel has written, under-copying without any error. A
// device that refuses O_DIRECT is an error wrapping [blockdev.ErrNoDirect].
func openCowSourceDirect(path string) (*cowSource, error) { return openSource(path, true) }

func openSource(path string, strict bool) (*cowSource, error) {
	r, err := blockdev.Open(path, blockdev.Options{Strict: strict})
	if err != nil {
		return nil, err
	}
	s := &cowSource{Reader: r}
	if r.Block() {
		s.holders = blockdev.Holders(path)
	}
	return s, nil
}

// live reports whether a device-mapper device holds the store, which is
// then likely the COW of an active snapshot.
func (s *cowSource) live() bool { return len(s.holders) > 0 }

// liveNote explains the consistency of a read of a held device.
func (s *cowSource) liveNote() string {
	return fmt.Sprintf("note: %s is in use by %s: if that is an active snapshot, this view is prefix-consistent (every change listed happened; later ones may be missing)",
		s.Path(), strings.Join(s.holders, ", "))
}

// openCowStore decodes the store at src with dec and turns format errors
// into messages for people, keeping the sentinels for errors.Is.
//
// A fresh store is only an absence of magic, which most things that are
// not stores share: one that holds another known signature (a dmsnap PV,
// a filesystem, a partition table) is refused, naming it, unless dmsnap
// knows the device as a snapshot's COW (whose first chunk the kernel may
// not have written yet, leaving old data after it).
func openCowStore(src *cowSource, dec cow.Decoder) (*cow.Store, error) {
	s, err := dec.Open(src, src.Size())
	if err != nil {
		return nil, describeCowError(src.Path(), err)
	}
	if s.Fresh() && !src.knownCOW() {
		var sig *lvm.SignatureError
		if err := lvm.DetectSignature(sourceDisk{src}); errors.As(err, &sig) {
			return nil, &cowError{fmt.Sprintf("%s: not a dm-snapshot persistent store: no snapshot magic; it holds a %s", src.Path(), sig.What), cow.ErrBadMagic}
		}
	}
	return s, nil
}

// knownCOW reports whether src is a snapshot's COW as far as the kernel
// says: a device a device-mapper device holds, or a dmsnap -cow device.
func (s *cowSource) knownCOW() bool {
	if s.live() {
		return true
	}
	if !s.Block() {
		return false
	}
	major, minor, err := blockdev.DevNum(s.Path())
	if err != nil {
		return false
	}
	u, ok := blockdev.DMUUID(major, minor)
	if !ok {
		return false
	}
	_, _, layer, err := lvm.ParseDMUUID(u)
	return err == nil && layer == lvm.LayerCOW
}

// zeroHead reports whether the first 4 KiB of src (or all of it, if
// shorter) are zero.
func (s *cowSource) zeroHead() bool {
	b := make([]byte, min(4096, s.Size()))
	if n, err := s.ReadAt(b, 0); n < len(b) && err != nil {
		return false
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// sourceDisk reads a cowSource as an lvm.Disk, for DetectSignature.
type sourceDisk struct{ s *cowSource }

func (d sourceDisk) ReadAt(b []byte, off int64) (int, error) { return d.s.ReadAt(b, off) }
func (d sourceDisk) WriteAt([]byte, int64) (int, error)      { return 0, errors.ErrUnsupported }
func (d sourceDisk) Sync() error                             { return nil }
func (d sourceDisk) Size() int64                             { return d.s.Size() }
func (d sourceDisk) Name() string                            { return d.s.Path() }

// cowError is a store problem phrased for the user; Unwrap gives the
// decoder's error (and its sentinel).
type cowError struct {
	msg string
	err error
}

func (e *cowError) Error() string { return e.msg }
func (e *cowError) Unwrap() error { return e.err }

func describeCowError(path string, err error) error {
	var herr *cow.HeaderError
	errors.As(err, &herr)
	switch {
	case errors.Is(err, cow.ErrBadMagic) && herr != nil:
		return &cowError{fmt.Sprintf("%s: not a dm-snapshot persistent store: bad magic %#08x (want %#08x, \"SnAp\")", path, herr.Header.Magic, cow.Magic), err}
	case errors.Is(err, cow.ErrInvalidated):
		return &cowError{fmt.Sprintf("%s: snapshot invalidated (the kernel dropped it, e.g. when the COW filled up): its exceptions are unusable and the changes since the snapshot are unknown", path), err}
	case errors.Is(err, cow.ErrTruncated) && herr == nil && strings.HasPrefix(err.Error(), "header"):
		return &cowError{fmt.Sprintf("%s: not a dm-snapshot persistent store: %v", path, err), err}
	}
	return &cowError{fmt.Sprintf("%s: bad exception store: %v", path, err), err}
}

// cowSentinelName is the stable JSON name of the sentinel in err.
func cowSentinelName(err error) string {
	for _, s := range []struct {
		err  error
		name string
	}{
		{cow.ErrBadMagic, "bad_magic"},
		{cow.ErrUnsupportedVersion, "unsupported_version"},
		{cow.ErrInvalidated, "invalidated"},
		{cow.ErrBadChunkSize, "bad_chunk_size"},
		{cow.ErrChunkSizeMismatch, "chunk_size_mismatch"},
		{cow.ErrTruncated, "truncated"},
		{cow.ErrOutOfRange, "out_of_range"},
		{cow.ErrMetadataChunk, "metadata_chunk"},
		{cow.ErrDuplicateOld, "duplicate_old"},
		{cow.ErrDuplicateNew, "duplicate_new"},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "io"
}

type cowInspectOptions struct {
	Path         string
	JSON         bool
	Limit        int
	ChunkSectors uint
}

// jsonCowUsage is the kernel's status triple with the percentage lvs
// shows.
type jsonCowUsage struct {
	Status           string  `json:"status"`
	AllocatedSectors uint64  `json:"allocated_sectors"`
	TotalSectors     uint64  `json:"total_sectors"`
	MetadataSectors  uint64  `json:"metadata_sectors"`
	UsedPercent      float64 `json:"used_percent"`
}

type jsonCowHeader struct {
	Magic        uint32 `json:"magic"`
	Valid        uint32 `json:"valid"`
	Version      uint32 `json:"version"`
	ChunkSectors uint32 `json:"chunk_sectors"`
}

type jsonException struct {
	OldChunk uint64 `json:"old_chunk"`
	NewChunk uint64 `json:"new_chunk"`
}

// jsonCowInspect is the `cow inspect --json` schema (docs/formats.md).
type jsonCowInspect struct {
	Path               string          `json:"path"`
	Kind               string          `json:"kind"` // "block" or "file"
	SizeBytes          int64           `json:"size_bytes"`
	Direct             bool            `json:"direct"`
	Live               bool            `json:"live"`
	InUseBy            []string        `json:"in_use_by"`
	Header             jsonCowHeader   `json:"header"`
	State              string          `json:"state"` // "valid", "fresh", "invalidated"
	ChunkSectors       uint32          `json:"chunk_sectors"`
	ChunkBytes         int64           `json:"chunk_bytes"`
	Exceptions         int             `json:"exceptions"`
	RecordsPerArea     int             `json:"records_per_area"`
	MetadataAreas      int             `json:"metadata_areas"`
	CurrentAreaRecords int             `json:"current_area_records"`
	NextFreeChunk      uint64          `json:"next_free_chunk"`
	Usage              jsonCowUsage    `json:"usage"`
	First              []jsonException `json:"first_exceptions"`
}

func cowUsage(u cow.Usage) jsonCowUsage {
	st := dm.SnapshotStatus{
		State: dm.SnapshotActive, Allocated: dm.Sector(u.AllocatedSectors), Total: dm.Sector(u.TotalSectors),
		Metadata: dm.Sector(u.MetadataSectors), HasMetadata: true,
	}
	return jsonCowUsage{
		Status: u.String(), AllocatedSectors: u.AllocatedSectors, TotalSectors: u.TotalSectors,
		MetadataSectors: u.MetadataSectors, UsedPercent: st.Percent(),
	}
}

func runCowInspect(_ context.Context, opts cowInspectOptions, gopts *globalOptions) error {
	if opts.Limit < -1 {
		return usageErrorf("--limit %d: want N >= 0, or -1 for all", opts.Limit)
	}
	chunk, err := cowChunkSectors(opts.ChunkSectors)
	if err != nil {
		return err
	}
	src, err := openCowSource(opts.Path)
	if err != nil {
		return err
	}
	defer src.Close()
	s, err := openCowStore(src, cow.Decoder{ExpectChunkSectors: chunk, AllowInvalidated: true})
	if err != nil {
		return err
	}
	st := s.State()
	out := jsonCowInspect{
		Path: opts.Path, Kind: "file", SizeBytes: src.Size(), Direct: src.Direct(), Live: src.live(),
		InUseBy: nonNilStrings(src.holders),
		Header:  jsonCowHeader{Magic: st.Header.Magic, Valid: st.Header.Valid, Version: st.Header.Version, ChunkSectors: st.Header.ChunkSectors},
		State:   "valid", ChunkSectors: st.ChunkSectors, ChunkBytes: int64(st.ChunkSectors) * cow.SectorSize,
		Exceptions: s.Len(), RecordsPerArea: st.PerArea(), MetadataAreas: st.CurrentArea + 1,
		CurrentAreaRecords: st.CurrentCommitted, NextFreeChunk: uint64(st.NextFree),
		Usage: cowUsage(s.Usage()), First: []jsonException{},
	}
	if src.Block() {
		out.Kind = "block"
	}
	switch {
	case st.Fresh:
		out.State = "fresh"
		out.MetadataAreas = 0
		if st.ChunkSectors == 0 {
			out.Usage = jsonCowUsage{Status: "", TotalSectors: uint64(src.Size()) / cow.SectorSize}
		}
	case st.Header.Valid == 0:
		out.State = "invalidated"
	}
	for i, e := range s.Exceptions() {
		if opts.Limit != -1 && i >= opts.Limit {
			break
		}
		out.First = append(out.First, jsonException{OldChunk: uint64(e.Old), NewChunk: uint64(e.New)})
	}
	if opts.JSON {
		return writeJSON(gopts.stdout, out)
	}
	if src.live() && !gopts.Quiet {
		fmt.Fprintln(gopts.stderr, src.liveNote())
	}
	w := gopts.stdout
	read := "buffered"
	if src.Direct() {
		read = "O_DIRECT"
	}
	fmt.Fprintf(w, "store:       %s (%s, %d bytes, read %s)\n", out.Path, out.Kind, out.SizeBytes, read)
	fmt.Fprintf(w, "header:      magic %#08x valid %d version %d chunk %d sectors\n", out.Header.Magic, out.Header.Valid, out.Header.Version, out.Header.ChunkSectors)
	switch out.State {
	case "fresh":
		fmt.Fprintln(w, "state:       fresh (never used: the kernel formats it on the next load)")
		if st.ChunkSectors == 0 {
			fmt.Fprintln(w, "fill:        unknown until a chunk size is given (--chunk-size)")
			return nil
		}
	case "invalidated":
		fmt.Fprintln(w, "state:       invalidated (the kernel reports \"Invalid\" and ignores these exceptions)")
	default:
		fmt.Fprintln(w, "state:       valid")
	}
	fmt.Fprintf(w, "chunk:       %d sectors (%s)\n", out.ChunkSectors, humanBytes(uint64(out.ChunkBytes)))
	fmt.Fprintf(w, "exceptions:  %d in %d metadata area(s) of %d records (current area holds %d)\n",
		out.Exceptions, max(out.MetadataAreas, 1), out.RecordsPerArea, out.CurrentAreaRecords)
	fmt.Fprintf(w, "fill:        %s (allocated/total metadata sectors, as the kernel's status prints it), %.1f%% used\n",
		out.Usage.Status, out.Usage.UsedPercent)
	fmt.Fprintf(w, "next free:   chunk %d\n", out.NextFreeChunk)
	if len(out.First) > 0 {
		fmt.Fprintf(w, "first %d exception(s), on-disk order (origin chunk -> COW chunk):\n", len(out.First))
		for _, e := range out.First {
			fmt.Fprintf(w, "  %d -> %d\n", e.OldChunk, e.NewChunk)
		}
	}
	return nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

type cowVerifyOptions struct {
	Path         string
	JSON         bool
	ChunkSectors uint
	OriginSize   string
}

// jsonCowVerify is the `cow verify --json` schema (docs/formats.md).
type jsonCowVerify struct {
	Path         string `json:"path"`
	OK           bool   `json:"ok"`
	Error        string `json:"error,omitempty"`
	Problem      string `json:"problem,omitempty"` // sentinel name, e.g. "bad_magic"
	Fresh        bool   `json:"fresh"`
	ChunkSectors uint32 `json:"chunk_sectors"`
	Exceptions   int    `json:"exceptions"`
	Status       string `json:"status"`
}

func runCowVerify(_ context.Context, opts cowVerifyOptions, gopts *globalOptions) error {
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
	src, err := openCowSource(opts.Path)
	if err != nil {
		return err
	}
	defer src.Close()
	res := jsonCowVerify{Path: opts.Path}
	s, err := openCowStore(src, cow.Decoder{ExpectChunkSectors: chunk})
	if err == nil && originBytes > 0 && !s.Fresh() {
		if _, berr := s.Bitmap(originChunks(originBytes, s.ChunkSectors())); berr != nil {
			err = &cowError{fmt.Sprintf("%s: bad exception store: %v (does it belong to a %d-byte origin?)", opts.Path, berr, originBytes), berr}
		}
	}
	if s != nil {
		res.Fresh, res.ChunkSectors, res.Exceptions = s.Fresh(), s.ChunkSectors(), s.Len()
		if s.ChunkSectors() != 0 {
			res.Status = s.Usage().String()
		}
	}
	if err != nil {
		if opts.JSON {
			res.Error, res.Problem = err.Error(), cowSentinelName(err)
			if werr := writeJSON(gopts.stdout, res); werr != nil {
				return errors.Join(err, werr)
			}
		}
		return err
	}
	res.OK = true
	if opts.JSON {
		return writeJSON(gopts.stdout, res)
	}
	if src.live() && !gopts.Quiet {
		fmt.Fprintln(gopts.stderr, src.liveNote())
	}
	if s.Fresh() {
		fmt.Fprintf(gopts.stdout, "%s: ok: fresh store (never used)\n", opts.Path)
		return nil
	}
	fmt.Fprintf(gopts.stdout, "%s: ok: %d exceptions, chunk %d sectors, status %s\n", opts.Path, s.Len(), s.ChunkSectors(), s.Usage())
	return nil
}

// parseOriginSize parses --origin-size with the CLI's size syntax.
func parseOriginSize(v string) (int64, error) {
	n, err := lvm.ParseSize(v)
	if err != nil {
		return 0, usageErrorf("--origin-size: %v", err)
	}
	return int64(n.Bytes()), nil
}

// originChunks is the number of chunks covering an origin of originBytes.
func originChunks(originBytes int64, chunkSectors uint32) cow.Chunk {
	cb := int64(chunkSectors) * cow.SectorSize
	return cow.Chunk((originBytes + cb - 1) / cb)
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dmsnap/dmsnap/merge"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// jsonMergeProgress is one line of `merge --json` (stable schema).
type jsonMergeProgress struct {
	MessageType    string  `json:"message_type"` // "merge_progress"
	Origin         string  `json:"origin"`
	TotalBytes     uint64  `json:"total_bytes"`
	RemainingBytes uint64  `json:"remaining_bytes"`
	MergedBytes    uint64  `json:"merged_bytes"`
	Percent        float64 `json:"percent"`
	Rate           float64 `json:"rate_bytes_per_second"`
	ETASeconds     float64 `json:"eta_seconds"` // -1 while unknown
	Done           bool    `json:"done"`
}

// jsonMergeDone is the last line per origin.
type jsonMergeDone struct {
	MessageType    string   `json:"message_type"` // "merge_done"
	Origin         string   `json:"origin"`
	TotalBytes     uint64   `json:"total_bytes"`
	ElapsedSeconds float64  `json:"elapsed_seconds"`
	Finished       bool     `json:"finished"` // the layout was tidied up
	OriginTarget   string   `json:"origin_target,omitempty"`
	Removed        []string `json:"removed"`
}

type jsonMergeStarted struct {
	MessageType string `json:"message_type"` // "merge_started"
	Origin      string `json:"origin"`
	Snapshot    string `json:"snapshot"`
}

func progressLine(r merge.Report) jsonMergeProgress {
	eta := -1.0
	if r.ETA >= 0 {
		eta = round3(r.ETA.Seconds())
	}
	return jsonMergeProgress{
		MessageType: "merge_progress", Origin: r.Origin,
		TotalBytes: r.TotalSectors.Bytes(), RemainingBytes: r.RemainingSectors.Bytes(), MergedBytes: r.MergedBytes,
		Percent: round3(r.Percent()), Rate: math.Round(r.Rate), ETASeconds: eta, Done: r.Done,
	}
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// mergeOutput implements merge.Progress for the CLI: a bar on a terminal,
// JSON lines otherwise (or with --json), nothing with --quiet.
type mergeOutput struct {
	gopts *globalOptions
	json  bool // JSON lines on stdout
	bar   *termBar
}

func newMergeOutput(gopts *globalOptions, env mergeEnv, watch bool) *mergeOutput {
	o := &mergeOutput{gopts: gopts}
	switch {
	case gopts.JSON:
		o.json = true
	case !watch || gopts.Quiet:
	case env.isTTY:
		o.bar = &termBar{w: gopts.stderr}
	default:
		o.json = true
	}
	return o
}

// Update implements merge.Progress.
func (o *mergeOutput) Update(r merge.Report) {
	switch {
	case o.json:
		_ = writeJSONLine(o.gopts.stdout, progressLine(r))
	case o.bar != nil:
		o.bar.update(r)
	}
}

func (o *mergeOutput) infof(format string, args ...any) {
	if !o.gopts.Quiet && !o.gopts.JSON {
		fmt.Fprintf(o.gopts.stdout, format+"\n", args...)
	}
}

// done prints the result of one origin's merge.
func (o *mergeOutput) done(r merge.Report, res *merge.FinishResult, finished bool) {
	if o.bar != nil {
		o.bar.finish()
	}
	d := jsonMergeDone{MessageType: "merge_done", Origin: r.Origin, TotalBytes: r.TotalSectors.Bytes(),
		ElapsedSeconds: round3(r.Elapsed.Seconds()), Finished: finished, Removed: []string{}}
	if res != nil {
		d.OriginTarget = res.OriginTarget
		if res.Removed != nil {
			d.Removed = res.Removed
		}
	}
	if o.gopts.JSON {
		_ = writeJSONLine(o.gopts.stdout, d)
		return
	}
	if o.json {
		_ = writeJSONLine(o.gopts.stdout, d)
	}
	if o.gopts.Quiet || o.json {
		return
	}
	msg := fmt.Sprintf("%s: merged %s in %v", r.Origin, humanBytes(d.TotalBytes), r.Elapsed.Round(time.Millisecond))
	if finished {
		msg += fmt.Sprintf("; origin is %s again", d.OriginTarget)
		if len(d.Removed) > 0 {
			msg += "; removed " + strings.Join(d.Removed, ", ")
		}
	}
	fmt.Fprintln(o.gopts.stdout, msg)
}

func (o *mergeOutput) close() {
	if o.bar != nil {
		o.bar.finish()
	}
}

// termBar draws one mpb bar per origin on a terminal: bytes merged of the
// total, percent, rate and ETA from the merge reports (docs/decisions.md:
// mpb v8, which the ZFS progress reuses).
type termBar struct {
	w    io.Writer
	p    *mpb.Progress
	bars map[string]*mpbBar
}

// mpbBar is one origin's bar and its last report, read by the decorator.
type mpbBar struct {
	bar  *mpb.Bar
	last atomic.Pointer[merge.Report]
}

func (b *termBar) update(r merge.Report) {
	if b.p == nil {
		b.p = mpb.New(mpb.WithOutput(b.w), mpb.WithWidth(barWidth+60), mpb.WithRefreshRate(150*time.Millisecond), mpb.WithAutoRefresh())
		b.bars = map[string]*mpbBar{}
	}
	mb := b.bars[r.Origin]
	if mb == nil {
		mb = &mpbBar{}
		mb.last.Store(&r)
		mb.bar = b.p.New(int64(r.TotalSectors.Bytes()), mpb.BarStyle().Lbound("[").Filler("=").Tip(">").Padding(" ").Rbound("]"),
			mpb.PrependDecorators(decor.Name(r.Origin, decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string { return fmt.Sprintf("%5.1f%%", mb.last.Load().Percent()) })),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return barTail(*mb.last.Load()) })),
			mpb.BarWidth(barWidth))
		b.bars[r.Origin] = mb
	}
	mb.last.Store(&r)
	total := int64(r.TotalSectors.Bytes())
	mb.bar.SetTotal(total, false)
	mb.bar.SetCurrent(int64(r.MergedBytes))
	if r.Done {
		mb.bar.SetTotal(total, true)
	}
}

// finish ends the bars (aborting those not done, so Wait returns) and
// waits until mpb drew them for the last time.
func (b *termBar) finish() {
	if b.p == nil {
		return
	}
	for _, mb := range b.bars {
		if !mb.bar.Completed() {
			mb.bar.Abort(false)
		}
	}
	b.p.Wait()
	b.p, b.bars = nil, nil
}

const barWidth = 30

// barTail is the text after the bar: merged / total, rate, ETA.
func barTail(r merge.Report) string {
	eta := "ETA ?"
	switch {
	case r.Done:
		eta = "done"
	case r.ETA >= 0:
		eta = "ETA " + r.ETA.Round(time.Second).String()
	}
	return fmt.Sprintf("%s / %s  %s/s  %s", humanBytes(r.MergedBytes), humanBytes(r.TotalSectors.Bytes()), humanBytes(uint64(r.Rate)), eta)
}

// isTerminal reports whether w is a character device (a terminal), the
// only place a bar is drawn.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

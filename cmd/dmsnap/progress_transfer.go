package main

import (
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// jsonTransferProgress is one progress line of ingest and replicate on
// stderr when it is not a terminal (stable schema). The step fields are
// replicate's, dataset is ingest's.
type jsonTransferProgress struct {
	MessageType    string  `json:"message_type"` // "ingest_progress", "replicate_progress"
	Step           int     `json:"step,omitempty"`
	Steps          int     `json:"steps,omitempty"`
	Send           string  `json:"send,omitempty"`    // replicate: the step
	Dataset        string  `json:"dataset,omitempty"` // ingest: the zvol
	Bytes          int64   `json:"bytes"`
	EstimatedBytes uint64  `json:"estimated_bytes"` // exact for ingest; zfs send -nvP's for replicate
	Percent        float64 `json:"percent"`
	Rate           float64 `json:"rate_bytes_per_second"`
	ETASeconds     float64 `json:"eta_seconds"` // -1 while unknown
	Done           bool    `json:"done"`
}

// transferProgress shows the bytes of one transfer against an estimate:
// an mpb bar on a terminal, a JSON line a second otherwise (also while
// the stream stalls), nothing with --quiet. Bytes are counted with Add
// or Set, safe for concurrent use; finish must be called once.
type transferProgress struct {
	bytes atomic.Int64
	w     io.Writer
	line  jsonTransferProgress
	shown bool // not --quiet
	start time.Time
	p     *mpb.Progress
	bar   *mpb.Bar
	stop  chan struct{}
	wg    sync.WaitGroup
}

// newTransferProgress starts the display of a transfer labelled label
// (the bar's name) whose JSON lines are line with the counters filled in;
// line.EstimatedBytes is the expected total.
func newTransferProgress(gopts *globalOptions, isTTY bool, label string, line jsonTransferProgress) *transferProgress {
	p := &transferProgress{w: gopts.stderr, start: time.Now(), stop: make(chan struct{}), line: line}
	if gopts.Quiet {
		return p
	}
	p.shown = true
	every := time.Second
	if isTTY {
		every = 150 * time.Millisecond
		p.p = mpb.New(mpb.WithOutput(gopts.stderr), mpb.WithWidth(barWidth+60), mpb.WithRefreshRate(every), mpb.WithAutoRefresh())
		// Total 0 at first: mpb lets SetTotal change (and complete) only
		// such a bar, and an estimate may be low.
		p.bar = p.p.New(0, mpb.BarStyle().Lbound("[").Filler("=").Tip(">").Padding(" ").Rbound("]"),
			mpb.PrependDecorators(decor.Name(label, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return p.tail() })),
			mpb.BarWidth(barWidth))
		p.bar.SetTotal(int64(line.EstimatedBytes), false)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.update(false)
			}
		}
	}()
	return p
}

// Set records that done bytes are through.
func (p *transferProgress) Set(done int64) { p.bytes.Store(done) }

// Write counts b: a transferProgress is the counting end of an
// io.MultiWriter or io.TeeReader on a stream.
func (p *transferProgress) Write(b []byte) (int, error) {
	p.bytes.Add(int64(len(b)))
	return len(b), nil
}

// report fills the line from the byte count.
func (p *transferProgress) report(done bool) jsonTransferProgress {
	l := p.line
	l.Bytes, l.Done = p.bytes.Load(), done
	el := time.Since(p.start).Seconds()
	l.ETASeconds = -1
	if el > 0 {
		l.Rate = math.Round(float64(l.Bytes) / el)
	}
	if l.EstimatedBytes > 0 {
		l.Percent = round3(math.Min(100, 100*float64(l.Bytes)/float64(l.EstimatedBytes)))
	}
	switch {
	case done:
		l.Percent, l.ETASeconds = 100, 0
	case l.Rate > 0 && l.EstimatedBytes > 0:
		l.ETASeconds = round3(math.Max(0, float64(int64(l.EstimatedBytes)-l.Bytes)/l.Rate))
	}
	return l
}

func (p *transferProgress) tail() string {
	l := p.report(false)
	eta := "ETA ?"
	if l.ETASeconds >= 0 {
		eta = "ETA " + (time.Duration(l.ETASeconds) * time.Second).String()
	}
	return humanBytes(uint64(l.Bytes)) + " / ~" + humanBytes(l.EstimatedBytes) + "  " + humanBytes(uint64(l.Rate)) + "/s  " + eta
}

func (p *transferProgress) update(done bool) {
	if p.bar != nil {
		n := p.bytes.Load()
		p.bar.SetTotal(max(int64(p.line.EstimatedBytes), n+1), false) // n+1: the estimate was low
		p.bar.SetCurrent(n)
		return
	}
	_ = writeJSONLine(p.w, p.report(done))
}

// finish ends the display: the bar completes (or aborts), the last JSON
// line says done (or not, if !ok).
func (p *transferProgress) finish(ok bool) {
	if !p.shown {
		return
	}
	p.shown = false
	close(p.stop)
	p.wg.Wait()
	switch {
	case p.bar != nil && ok:
		p.bar.SetTotal(p.bytes.Load(), true)
		p.p.Wait()
	case p.bar != nil:
		p.bar.Abort(false)
		p.p.Wait()
	default:
		_ = writeJSONLine(p.w, p.report(ok))
	}
}

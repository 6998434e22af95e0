package main

import (
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// jsonTransferProgress is one progress line of ingest and replicate on
// stderr when it is not a terminal (stable schema).
type jsonTransferProgress struct {
	MessageType string  `json:"message_type"` // "progress"
	Operation   string  `json:"operation"`    // "ingest", "replicate"
	Subject     string  `json:"subject"`      // what moves: a dataset, a send step
	DoneBytes   int64   `json:"done_bytes"`
	TotalBytes  int64   `json:"total_bytes"` // an estimate for replicate
	Rate        float64 `json:"rate_bytes_per_second"`
	ETASeconds  float64 `json:"eta_seconds"` // -1 while unknown
	Done        bool    `json:"done"`
}

// byteProgress shows a transfer of total bytes on stderr: an mpb bar
// (bytes, rate, ETA) on a terminal, otherwise a JSON line at most every
// jsonEvery and one at the end; nothing with --quiet. Set and Add are
// safe for concurrent use; Finish must be called once.
type byteProgress struct {
	op, subject string
	total       int64
	start       time.Time

	w       io.Writer // JSON lines; nil for none
	every   time.Duration
	p       *mpb.Progress
	bar     *mpb.Bar
	mu      sync.Mutex
	done    int64
	lastOut time.Time
}

const jsonProgressEvery = time.Second

func newByteProgress(gopts *globalOptions, op, subject string, total int64) *byteProgress {
	bp := &byteProgress{op: op, subject: subject, total: total, start: time.Now(), every: jsonProgressEvery}
	switch {
	case gopts.Quiet:
	case isTerminal(gopts.stderr):
		bp.p = mpb.New(mpb.WithOutput(gopts.stderr), mpb.WithWidth(barWidth+70), mpb.WithRefreshRate(150*time.Millisecond), mpb.WithAutoRefresh())
		bp.bar = bp.p.New(total, mpb.BarStyle().Lbound("[").Filler("=").Tip(">").Padding(" ").Rbound("]"),
			mpb.PrependDecorators(decor.Name(subject, decor.WCSyncSpaceR), decor.Percentage(decor.WCSyncSpace)),
			mpb.AppendDecorators(
				decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"),
				decor.Name("  "), decor.AverageSpeed(decor.SizeB1024(0), "% .1f"),
				decor.Name("  ETA "), decor.AverageETA(decor.ET_STYLE_GO)),
			mpb.BarWidth(barWidth))
	default:
		bp.w = gopts.stderr
	}
	return bp
}

// Set records that done bytes of the transfer are through.
func (bp *byteProgress) Set(done int64) {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	bp.done = done
	if bp.bar != nil {
		if done > bp.total { // an estimate fell short
			bp.total = done
			bp.bar.SetTotal(done, false)
		}
		bp.bar.SetCurrent(done)
	}
	if bp.w != nil && time.Since(bp.lastOut) >= bp.every {
		bp.emit(false)
	}
}

// Add records n more bytes.
func (bp *byteProgress) Add(n int64) {
	bp.mu.Lock()
	done := bp.done + n
	bp.mu.Unlock()
	bp.Set(done)
}

// Write makes byteProgress an io.Writer that counts bytes (for
// io.TeeReader / io.MultiWriter on a stream).
func (bp *byteProgress) Write(b []byte) (int, error) {
	bp.Add(int64(len(b)))
	return len(b), nil
}

// Finish ends the display: the bar is completed if ok, aborted
// otherwise, and a last JSON line says done.
func (bp *byteProgress) Finish(ok bool) {
	bp.mu.Lock()
	defer bp.mu.Unlock()
	if bp.bar != nil {
		if ok {
			bp.bar.SetTotal(bp.done, true)
		} else {
			bp.bar.Abort(false)
		}
		bp.p.Wait()
		bp.bar, bp.p = nil, nil
	}
	if bp.w != nil {
		bp.emit(ok)
		bp.w = nil
	}
}

// emit writes one JSON line; bp.mu is held.
func (bp *byteProgress) emit(done bool) {
	el := time.Since(bp.start).Seconds()
	line := jsonTransferProgress{MessageType: "progress", Operation: bp.op, Subject: bp.subject,
		DoneBytes: bp.done, TotalBytes: bp.total, ETASeconds: -1, Done: done}
	if el > 0 {
		line.Rate = round3(float64(bp.done) / el)
	}
	if line.Rate > 0 && bp.total >= bp.done {
		line.ETASeconds = round3(float64(bp.total-bp.done) / line.Rate)
	}
	_ = writeJSONLine(bp.w, line)
	bp.lastOut = time.Now()
}

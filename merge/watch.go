package merge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dmsnap/dmsnap/dm"
)

// Report is one observation of a running merge.
type Report struct {
	// Origin is the device running snapshot-merge.
	Origin string
	// State is the merge target's state; anything but SnapshotActive ends
	// the watch with an error.
	State dm.SnapshotState
	// TotalSectors is what was left to merge (allocated minus metadata)
	// when the watch first saw the merge, or more if it later saw more.
	// A watch that re-attaches to a running merge starts from what is left.
	TotalSectors dm.Sector
	// RemainingSectors is allocated minus metadata now; never above
	// TotalSectors, never increasing.
	RemainingSectors dm.Sector
	// MergedBytes is (TotalSectors-RemainingSectors) in bytes.
	MergedBytes uint64
	// Rate is the mean merge rate since the first observation, in bytes
	// per second (0 until two observations differ).
	Rate float64
	// ETA is RemainingSectors at Rate; -1 while unknown.
	ETA time.Duration
	// Elapsed is the time since the first observation.
	Elapsed time.Duration
	// Done: allocated == metadata (every chunk merged), or the origin no
	// longer runs snapshot-merge after the watch saw it merging (another
	// tool, such as lvconvert, finished it).
	Done bool
}

// Percent returns the merged share of TotalSectors, 0 to 100; 100 when
// there was nothing to merge.
func (r Report) Percent() float64 {
	if r.TotalSectors == 0 {
		if r.Done {
			return 100
		}
		return 0
	}
	return float64(r.TotalSectors-r.RemainingSectors) / float64(r.TotalSectors) * 100
}

// Progress receives merge reports. Implementations are called from the
// watching goroutine only, one report at a time; they must not block for
// long, since polling waits for them. The CLI's bar and JSON lines and the
// metrics collectors implement it.
type Progress interface {
	Update(Report)
}

// NopProgress discards reports.
type NopProgress struct{}

// Update does nothing.
func (NopProgress) Update(Report) {}

// ProgressFunc adapts a function to [Progress].
type ProgressFunc func(Report)

// Update calls f(r).
func (f ProgressFunc) Update(r Report) { f(r) }

// Interval limits for [Watch]: below 50 ms polling costs CPU for nothing
// (a merge step takes longer), above a minute a watcher reports too late.
const (
	MinInterval     = 50 * time.Millisecond
	MaxInterval     = time.Minute
	DefaultInterval = 500 * time.Millisecond
)

// CheckInterval returns an error naming the valid range if d is outside it.
func CheckInterval(d time.Duration) error {
	if d < MinInterval || d > MaxInterval {
		return fmt.Errorf("interval %v out of range: must be from %v to %v", d, MinInterval, MaxInterval)
	}
	return nil
}

// watcher follows one origin.
type watcher struct {
	origin   string
	now      func() time.Time
	started  time.Time
	seen     bool
	total    dm.Sector
	last     dm.Sector
	finished bool
}

// poll reads the origin's status once (one DM_TABLE_STATUS ioctl) and
// returns the report.
func (w *watcher) poll(c Client) (Report, error) {
	lines, _, err := c.Status(w.origin)
	if errors.Is(err, dm.ErrNotFound) {
		if w.seen {
			return Report{}, fmt.Errorf("merge %s: origin removed during the merge: %w", w.origin, err)
		}
		return Report{}, fmt.Errorf("merge %s: %w", w.origin, err)
	}
	if err != nil {
		return Report{}, fmt.Errorf("merge %s: %w", w.origin, err)
	}
	now := w.now()
	if !w.seen {
		w.started = now
	}
	r := Report{Origin: w.origin, Elapsed: now.Sub(w.started), ETA: -1}
	if len(lines) != 1 || lines[0].Type != dm.TypeSnapshotMerge {
		if !w.seen {
			return Report{}, fmt.Errorf("merge %s: table is not snapshot-merge: %w", w.origin, ErrNotMerging)
		}
		// Someone else (lvconvert's poller, dmsnap Finish in another
		// process) switched the table back: the merge completed.
		return w.done(r), nil
	}
	st, err := dm.ParseSnapshotStatus(lines[0].Params)
	if err != nil {
		return Report{}, fmt.Errorf("merge %s: %w", w.origin, err)
	}
	r.State = st.State
	switch st.State {
	case dm.SnapshotActive:
	case dm.SnapshotMergeFailed:
		return r, fmt.Errorf("merge %s: %w", w.origin, ErrMergeFailed)
	case dm.SnapshotInvalid:
		return r, fmt.Errorf("merge %s: the merging COW was invalidated (I/O error?); the origin holds a partly merged state: %w", w.origin, ErrInvalidated)
	default:
		return r, fmt.Errorf("merge %s: status %q carries no progress", w.origin, st.Params())
	}
	if !st.HasMetadata {
		return r, fmt.Errorf("merge %s: status %q has no metadata count (snapshot target before 1.8.0)", w.origin, st.Params())
	}
	if st.Metadata == 0 {
		// A live persistent store always counts its header and first
		// area (metadata >= 2 chunks). "0/N 0" is a snapshot-merge table
		// between its table swap and the handover of the exceptions
		// (seen on 6.1 and 6.12 while a merge was starting): not done,
		// and no progress to report yet.
		return r, nil
	}
	rem := st.MergeRemaining()
	if !w.seen || rem > w.total {
		w.total = rem
	}
	if !w.seen || rem < w.last {
		w.last = rem
	}
	w.seen = true
	r.TotalSectors, r.RemainingSectors = w.total, w.last
	r.MergedBytes = (w.total - w.last).Bytes()
	if secs := r.Elapsed.Seconds(); secs > 0 && r.MergedBytes > 0 {
		r.Rate = float64(r.MergedBytes) / secs
		r.ETA = time.Duration(float64(w.last.Bytes()) / r.Rate * float64(time.Second)).Round(time.Millisecond)
	}
	if st.MergeDone() {
		return w.done(r), nil
	}
	return r, nil
}

func (w *watcher) done(r Report) Report {
	w.finished = true
	w.last = 0
	r.State = dm.SnapshotActive
	r.TotalSectors, r.RemainingSectors = w.total, 0
	r.MergedBytes = w.total.Bytes()
	r.ETA = 0
	if secs := r.Elapsed.Seconds(); secs > 0 {
		r.Rate = float64(r.MergedBytes) / secs
	}
	r.Done = true
	return r
}

// Watch polls the origin's merge every interval (one DM_TABLE_STATUS per
// tick; the kernel raises no event on merge progress or completion) and
// reports each observation to p, the first one at once. It returns the
// final report when the merge is done: allocated == metadata, or the
// origin's table switched away from snapshot-merge after Watch saw it
// merging. It re-attaches to a merge already running, whoever started it.
// p may be nil.
//
// Errors: [ErrNotMerging] if the origin does not run snapshot-merge at the
// first poll; [ErrMergeFailed] ("Merge failed": the origin stays usable;
// retry the merge or inspect the COW); [ErrInvalidated]; ctx.Err() when
// cancelled (the merge goes on in the kernel).
func Watch(ctx context.Context, c Client, origin string, interval time.Duration, p Progress) (Report, error) {
	rs, err := WatchAll(ctx, c, []string{origin}, interval, p)
	if len(rs) == 1 {
		return rs[0], err
	}
	return Report{}, err
}

// WatchAll is [Watch] over several origins in one polling loop (one ioctl
// per origin and tick). It returns when every origin is done or failed,
// with the last report of each (in the order of origins) and the errors
// joined; p receives the reports of all origins.
func WatchAll(ctx context.Context, c Client, origins []string, interval time.Duration, p Progress) ([]Report, error) {
	return watchAll(ctx, c, origins, interval, p, time.Now)
}

func watchAll(ctx context.Context, c Client, origins []string, interval time.Duration, p Progress, now func() time.Time) ([]Report, error) {
	if err := CheckInterval(interval); err != nil {
		return nil, err
	}
	if p == nil {
		p = NopProgress{}
	}
	ws := make([]*watcher, len(origins))
	for i, o := range origins {
		ws[i] = &watcher{origin: o, now: now}
	}
	last := make([]Report, len(origins))
	var errs []error
	live := len(ws)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for i, w := range ws {
			if w == nil {
				continue
			}
			r, err := w.poll(c)
			if err != nil {
				errs = append(errs, err)
				ws[i], live = nil, live-1
				continue
			}
			last[i] = r
			p.Update(r)
			if r.Done {
				ws[i], live = nil, live-1
			}
		}
		if live == 0 {
			return last, errors.Join(errs...)
		}
		select {
		case <-ctx.Done():
			return last, errors.Join(append(errs, ctx.Err())...)
		case <-t.C:
		}
	}
}

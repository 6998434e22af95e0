package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dmsnap/dmsnap/zfs"
)

// ErrReplicaGUID: the receiver's copy of a sent snapshot has another guid.
var ErrReplicaGUID = errors.New("received snapshot's guid differs from the sent one")

// ErrNothingToResume: Request.Resume without an interrupted receive.
var ErrNothingToResume = errors.New("no interrupted receive to resume")

// PartialError is a failure after some steps were received: the target
// holds part of what was to be sent (see Result.Steps).
type PartialError struct{ Err error }

func (e *PartialError) Error() string { return e.Err.Error() }
func (e *PartialError) Unwrap() error { return e.Err }

// Request is one replication of Dataset into Target.
type Request struct {
	Dataset, Target string
	// ToHost names the receiver's host (an ssh destination) for messages
	// and the record; empty: the target is on this host.
	ToHost string
	// Sender runs zfs on this host; Receiver on the target's host (the
	// same Runner when ToHost is empty).
	Sender, Receiver *zfs.Runner
	// ReceiveVia is the argv prefix shown before a remote receive's
	// "zfs receive ..." (e.g. ssh -o BatchMode=yes HOST).
	ReceiveVia []string
	// DryRun plans and estimates, changing nothing. Resume only resumes
	// an interrupted receive. ForceRollback lets receive -F destroy target
	// snapshots newer than the base; with AllowFull it also overwrites a
	// target of unrelated history by a full send.
	DryRun, Resume, ForceRollback, AllowFull bool
	// Lock, if set, takes the dataset's lock (not for a dry run); Run
	// closes it at the end.
	Lock func() (io.Closer, error)
	// Observer is told of what Run does; nil tells no one.
	Observer Observer
	// Failpoint, if set, is called at each Failpoint* step (crash tests).
	Failpoint func(name string)
}

// Step is one send | receive.
type Step struct {
	Kind           string // full, incremental, package (-I), resume
	From, To       string
	ToGUID         uint64
	Send           []string // argv after "zfs"
	Receive        []string // argv, with ReceiveVia when remote
	EstimatedBytes uint64
	Bytes          uint64
	Seconds        float64
	Bookmarks      []string // made on the sender after the receive
}

// Result is what a replication did (or, with DryRun, would do).
type Result struct {
	Dataset, Target, ToHost string
	DryRun, UpToDate        bool
	// Resumed: an interrupted receive was resumed. Aborted: one was
	// aborted (receive -A) because zfs rejected its token.
	Resumed, Aborted bool
	Base             *zfs.Point // the common base on the sender, if any
	Destroys         []string   // target snapshots destroyed (or to be)
	Steps            []Step
	EstimatedBytes   uint64
	Bytes            uint64
	Seconds          float64
	Warnings         []string
}

// Observer is told what [Run] does, from the goroutine that called Run.
type Observer interface {
	// Versions reports both sides' zfs versions and the guard's verdict.
	Versions(v zfs.Versions, g zfs.Guard)
	// Warn reports a problem that did not stop the replication (also in
	// Result.Warnings).
	Warn(msg string)
	// Base reports the common base: sender point and receiver snapshot.
	Base(sender, receiver zfs.Point)
	// UpToDate: nothing to send.
	UpToDate()
	// Destroys reports what --force-rollback destroys (or would).
	Destroys(msg string)
	// StepStart reports step i of n, before it runs (or, dry, instead).
	StepStart(s Step, i, n int)
	// TransferStart begins the stream of s (est bytes estimated); the
	// stream is also written to the returned writer, to count it.
	TransferStart(s zfs.Send, est uint64, i, n int) io.Writer
	// TransferEnd ends it.
	TransferEnd(ok bool)
	// StepDone reports a received, verified and recorded step.
	StepDone(s Step, elapsed time.Duration)
	// Resumed reports that Request.Resume resumed the receive of the
	// snapshot short.
	Resumed(short string)
	// DryRunDone closes a dry run.
	DryRunDone(estimatedBytes uint64, steps int)
}

type nopObserver struct{}

func (nopObserver) Versions(zfs.Versions, zfs.Guard) {}
func (nopObserver) Warn(string)                      {}
func (nopObserver) Base(zfs.Point, zfs.Point)        {}
func (nopObserver) UpToDate()                        {}
func (nopObserver) Destroys(string)                  {}
func (nopObserver) StepStart(Step, int, int)         {}
func (nopObserver) TransferStart(zfs.Send, uint64, int, int) io.Writer {
	return io.Discard
}
func (nopObserver) TransferEnd(bool)             {}
func (nopObserver) StepDone(Step, time.Duration) {}
func (nopObserver) Resumed(string)               {}
func (nopObserver) DryRunDone(uint64, int)       {}

// counter counts what passes to w.
type counter struct {
	w io.Writer
	n atomic.Int64
}

func (c *counter) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	return c.w.Write(b)
}

// StepLabel describes a step for people: Send.String, except that a
// resume names the snapshot, not the long token.
func StepLabel(s zfs.Send) string {
	if s.ResumeToken != "" && s.To != "" {
		return "resume " + s.To
	}
	return s.String()
}

func stepKind(s zfs.Send) string {
	switch {
	case s.ResumeToken != "":
		return "resume"
	case !s.Incremental:
		return "full"
	case s.Intermediates:
		return "package"
	default:
		return "incremental"
	}
}

// replication is one [Run].
type replication struct {
	req      Request
	obs      Observer
	snd, rcv *zfs.Runner
	guard    zfs.Guard
	side     string // "receiver HOST: " for errors of the remote side
	res      Result
	sndPts   []zfs.Point
}

func (rp *replication) warn(msg string) {
	rp.res.Warnings = append(rp.res.Warnings, msg)
	rp.obs.Warn(msg)
}

func (rp *replication) failpoint(name string) {
	if rp.req.Failpoint != nil {
		rp.req.Failpoint(name)
	}
}

// Run replicates req.Dataset's snapshots that req.Target lacks: the
// version guard, at most one resumed receive and one abort of a rejected
// token, then the plan's steps (see [NewPlan]), each received, verified
// by GUID and recorded on the sender (bookmark, [RecordProperty],
// #dmsnap-last-sent). The Result is filled as far as Run got, also on
// error. A failure after some steps is a *[PartialError]; errors wrap
// [ErrReplicaGUID], [ErrNothingToResume] and zfs's sentinels.
func Run(ctx context.Context, req Request) (Result, error) {
	rp := &replication{req: req, obs: req.Observer, snd: req.Sender, rcv: req.Receiver,
		res: Result{Dataset: req.Dataset, Target: req.Target, ToHost: req.ToHost, DryRun: req.DryRun,
			Destroys: []string{}, Steps: []Step{}, Warnings: []string{}}}
	if rp.obs == nil {
		rp.obs = nopObserver{}
	}
	if rp.rcv == nil {
		rp.rcv = rp.snd
	}
	if req.ToHost != "" {
		rp.side = "receiver " + req.ToHost + ": "
	}
	start := time.Now()
	if err := rp.versionGuard(ctx); err != nil {
		return rp.res, err
	}
	if !req.DryRun && req.Lock != nil {
		l, err := req.Lock()
		if err != nil {
			return rp.res, err
		}
		defer l.Close()
	}
	err := rp.run(ctx)
	rp.res.Seconds = round3(time.Since(start).Seconds())
	return rp.res, err
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// versionGuard reads `zfs version` on the sender (and the receiver host):
// a missing program or module is an error saying which; a mismatch is a
// warning; the known-bad pair turns off send -I.
func (rp *replication) versionGuard(ctx context.Context) error {
	vs, err := rp.snd.Version(ctx)
	if err != nil {
		return zfs.Explain("", err)
	}
	rp.guard = zfs.CheckVersions(vs)
	if rp.guard.Warning != "" {
		rp.warn(rp.guard.Warning)
	}
	rp.obs.Versions(vs, rp.guard)
	if rp.req.ToHost == "" {
		return nil
	}
	rvs, err := rp.rcv.Version(ctx)
	if err != nil {
		return zfs.Explain(rp.side, err)
	}
	if g := zfs.CheckVersions(rvs); g.Warning != "" {
		rp.warn("on " + rp.req.ToHost + ": " + g.Warning)
	}
	if u, ru := vs.Userland, rvs.Userland; ru.Major < u.Major || ru.Major == u.Major && ru.Minor < u.Minor {
		rp.warn(fmt.Sprintf("%s runs zfs %s, older than this host's %s: it may refuse streams that use newer features", rp.req.ToHost, ru, u))
	}
	return nil
}

// receiverState is what the receiver has now.
type receiverState struct {
	exists bool
	token  string
	points []zfs.Point
}

func (rp *replication) readReceiver(ctx context.Context) (receiverState, error) {
	var st receiverState
	m, err := rp.rcv.Get(ctx, rp.req.Target, "receive_resume_token")
	switch {
	case errors.Is(err, zfs.ErrDatasetNotFound):
		// A new target: its parent (or pool) must exist for zfs receive.
		parent := path.Dir(rp.req.Target)
		if parent == "." {
			return st, fmt.Errorf("%starget %s is a pool root that does not exist: %w", rp.side, rp.req.Target, zfs.ErrDatasetNotFound)
		}
		ok, err := rp.rcv.Exists(ctx, parent)
		if err != nil {
			return st, zfs.Explain(rp.side, err)
		}
		if !ok {
			return st, fmt.Errorf("%sthe parent %s of target %s does not exist (create it first, e.g. zfs create -p %s): %w",
				rp.side, parent, rp.req.Target, parent, zfs.ErrDatasetNotFound)
		}
		return st, nil
	case err != nil:
		return st, zfs.Explain(rp.side, err)
	}
	st.exists, st.token = true, m["receive_resume_token"]
	if st.points, err = rp.rcv.Points(ctx, rp.req.Target); err != nil {
		return st, zfs.Explain(rp.side, err)
	}
	return st, nil
}

func (rp *replication) receiveArgv(force bool) []string {
	a := zfs.ReceiveArgs(rp.req.Target, force)
	a = append([]string{"zfs"}, a...)
	if rp.req.ToHost != "" {
		a = append(append([]string(nil), rp.req.ReceiveVia...), a...)
	}
	return a
}

// run plans and replicates: at most one resumed receive, one abort of a
// rejected token, and then the plan's steps.
func (rp *replication) run(ctx context.Context) error {
	var err error
	if rp.sndPts, err = rp.snd.Points(ctx, rp.req.Dataset); err != nil {
		if errors.Is(err, zfs.ErrDatasetNotFound) {
			return fmt.Errorf("sender dataset %s does not exist: %w", rp.req.Dataset, err)
		}
		return zfs.Explain("", err)
	}
	st, err := rp.readReceiver(ctx)
	if err != nil {
		return err
	}
	if rp.req.Resume && st.token == "" {
		return fmt.Errorf("%s has no receive_resume_token: %w (run replicate without --resume)", rp.req.Target, ErrNothingToResume)
	}
	for round := 0; ; round++ {
		if round > 3 {
			return fmt.Errorf("replicate %s: the receiver keeps changing while planning", rp.req.Target)
		}
		req := PlanRequest{
			Sender: rp.req.Dataset, Receiver: rp.req.Target,
			SenderPoints: rp.sndPts, ReceiverPoints: st.points, ReceiverExists: st.exists, ResumeToken: st.token,
			AllowFull: rp.req.AllowFull, ForceRollback: rp.req.ForceRollback,
			IncrementalPackage: rp.guard.SendIncrementalPackage,
		}
		plan, err := NewPlan(req)
		if err != nil {
			return err
		}
		if plan.Resume {
			next, done, err := rp.resume(ctx, st)
			if err != nil || done {
				return err
			}
			st = next
			continue
		}
		return rp.execute(ctx, plan, st)
	}
}

// resume resumes (or aborts) the interrupted receive. It returns the
// receiver's new state, or done when --resume is satisfied. Only a
// receive of DATASET's own snapshots is resumed or aborted: the token
// names the snapshot it sends.
func (rp *replication) resume(ctx context.Context, st receiverState) (receiverState, bool, error) {
	info, err := rp.snd.ResumeInfo(ctx, st.token)
	if info.ToName != "" && (zfs.Point{Name: info.ToName}).Dataset() != rp.req.Dataset {
		return st, false, fmt.Errorf("%s has an interrupted receive of %s, not of %s: finish it with dmsnap replicate %s %s --resume, or abort it with zfs receive -A %s",
			rp.req.Target, info.ToName, rp.req.Dataset, (zfs.Point{Name: info.ToName}).Dataset(), rp.req.Target, rp.req.Target)
	}
	if errors.Is(err, zfs.ErrResumeTokenInvalid) {
		switch {
		case rp.req.Resume:
			return st, false, fmt.Errorf("the interrupted receive into %s cannot be resumed: %w; run replicate without --resume to abort it (zfs receive -A) and send again", rp.req.Target, err)
		case info.ToName == "":
			// Unreadable: it may be another sender's, so leave it.
			return st, false, fmt.Errorf("the interrupted receive into %s cannot be resumed and its token does not say whose it is: %w; abort it with zfs receive -A %s if it is not needed", rp.req.Target, err, rp.req.Target)
		}
		rp.warn(fmt.Sprintf("the interrupted receive of %s into %s cannot be resumed (%v); aborting it with zfs receive -A %s and planning again", info.ToName, rp.req.Target, err, rp.req.Target))
		rp.res.Aborted = true
		if rp.req.DryRun {
			// What the abort would leave: a partial full receive
			// (no snapshots yet) takes the dataset with it.
			st.token = ""
			st.exists = len(st.points) > 0
			return st, false, nil
		}
		if err := rp.rcv.AbortReceive(ctx, rp.req.Target); err != nil {
			return st, false, zfs.Explain(rp.side, err)
		}
		next, err := rp.readReceiver(ctx)
		return next, false, err
	}
	if err != nil {
		return st, false, zfs.Explain("", err)
	}
	if !rp.req.Resume {
		rp.warn(fmt.Sprintf("%s has an interrupted receive of %s; resuming it first", rp.req.Target, info.ToName))
	}
	rp.res.Resumed = true
	s := zfs.Send{ResumeToken: st.token, To: info.ToName, ToGUID: info.ToGUID}
	if err := rp.step(ctx, s, false, info.EstimateBytes, 1, 1); err != nil {
		return st, false, err
	}
	if rp.req.DryRun {
		// Replan as if the resumed snapshot had arrived.
		var top uint64
		for _, p := range st.points {
			top = max(top, p.CreateTXG)
		}
		st.points = append(st.points, zfs.Point{Name: zfs.SnapshotFullName(rp.req.Target, pointShort(info.ToName)), Kind: zfs.Snapshot,
			GUID: info.ToGUID, CreateTXG: top + 1})
		st.token, st.exists = "", true
		return st, rp.req.Resume, nil
	}
	if rp.req.Resume {
		rp.obs.Resumed(pointShort(info.ToName))
		return st, true, nil
	}
	next, err := rp.readReceiver(ctx)
	return next, false, err
}

// execute runs the plan's steps.
func (rp *replication) execute(ctx context.Context, plan Plan, st receiverState) error {
	if plan.Base.Name != "" {
		b := plan.Base
		rp.res.Base = &b
		rp.obs.Base(plan.Base, plan.ReceiverBase)
	}
	if plan.UpToDate {
		rp.res.UpToDate = true
		rp.obs.UpToDate()
		if !rp.req.DryRun && plan.Base.Kind == zfs.Snapshot {
			// Redo what an earlier run may not have finished (killed
			// between the receive and the record): move
			// #dmsnap-last-sent if it is missing or older than the
			// base, never back (another target may be ahead).
			last := zfs.BookmarkFullName(rp.req.Dataset, zfs.LastSentBookmark)
			i := slices.IndexFunc(rp.sndPts, func(p zfs.Point) bool { return p.Name == last })
			behind := i < 0 || rp.sndPts[i].CreateTXG < plan.Base.CreateTXG
			return rp.record(ctx, plan.Base.Name, plan.Base.GUID, behind)
		}
		return nil
	}
	for _, d := range plan.Destroys {
		rp.res.Destroys = append(rp.res.Destroys, d.Name)
	}
	if len(plan.Destroys) > 0 {
		how := "zfs receive -F destroys"
		switch {
		case plan.DestroyFirst && rp.req.DryRun:
			how = "the full receive would first destroy"
		case plan.DestroyFirst:
			how = "the full receive first destroys"
		case rp.req.DryRun:
			how = "zfs receive -F would destroy"
		}
		msg := fmt.Sprintf("--force-rollback: %s on %s%s: %s", how, rp.req.Target, hostSuffix(rp.req.ToHost), joinNames(plan.Destroys))
		rp.obs.Destroys(msg)
	}
	// Every estimate before any change: a send zfs would refuse fails
	// here, with the target untouched.
	ests := make([]uint64, len(plan.Sends))
	for i, s := range plan.Sends {
		est, err := rp.snd.SendEstimate(ctx, s)
		if err != nil {
			return rp.partial(fmt.Errorf("estimate %s: %w", StepLabel(s), zfs.Explain("", err)))
		}
		ests[i] = est
	}
	if plan.DestroyFirst && !rp.req.DryRun {
		for _, d := range plan.Destroys {
			if err := rp.rcv.Destroy(ctx, d.Name); err != nil {
				return zfs.Explain(rp.side, err)
			}
		}
	}
	for i, s := range plan.Sends {
		// --force-rollback: the first receive into an existing target
		// also discards changes made there since its last snapshot.
		s.Force = s.Force || (i == 0 && rp.req.ForceRollback && st.exists)
		if err := rp.step(ctx, s, s.Force, ests[i], i+1, len(plan.Sends)); err != nil {
			return rp.partial(err)
		}
	}
	if rp.req.DryRun {
		rp.obs.DryRunDone(rp.res.EstimatedBytes, len(rp.res.Steps))
	}
	return nil
}

func hostSuffix(host string) string {
	if host == "" {
		return ""
	}
	return " (on " + host + ")"
}

func joinNames(pts []zfs.Point) string {
	s := make([]string, len(pts))
	for i, p := range pts {
		s[i] = p.Name
	}
	return strings.Join(s, ", ")
}

// partial wraps a failure that came after some steps were received.
func (rp *replication) partial(err error) error {
	if rp.req.DryRun || len(rp.res.Steps) == 0 {
		return err
	}
	last := rp.res.Steps[len(rp.res.Steps)-1].To
	return &PartialError{fmt.Errorf("replicate %s: %d step(s) done (%s has %s), then: %w",
		rp.req.Target, len(rp.res.Steps), rp.req.Target, pointShort(last), err)}
}

// step runs (or with --dry-run prints) one send | receive, then checks
// the received guid and records it on the sender.
func (rp *replication) step(ctx context.Context, s zfs.Send, force bool, est uint64, i, n int) error {
	js := Step{Kind: stepKind(s), From: s.From, To: s.To, ToGUID: s.ToGUID,
		Send: zfs.SendArgs(s), Receive: rp.receiveArgv(force), EstimatedBytes: est}
	rp.res.EstimatedBytes += est
	rp.obs.StepStart(js, i, n)
	if rp.req.DryRun {
		rp.res.Steps = append(rp.res.Steps, js)
		return nil
	}
	start := time.Now()
	prog := &counter{w: rp.obs.TransferStart(s, est, i, n)}
	bytes, err := rp.transfer(ctx, s, force, prog)
	rp.obs.TransferEnd(err == nil)
	js.Bytes, js.Seconds = uint64(bytes), round3(time.Since(start).Seconds())
	rp.res.Bytes += js.Bytes
	if err != nil {
		return rp.transferFailed(ctx, s, err)
	}
	if err := rp.verify(ctx, s); err != nil {
		return err
	}
	rp.res.Steps = append(rp.res.Steps, js)
	rp.failpoint(FailpointAfterReceive)
	if err := rp.record(ctx, s.To, s.ToGUID, true); err != nil {
		return err
	}
	st := &rp.res.Steps[len(rp.res.Steps)-1]
	st.Bookmarks = []string{zfs.BookmarkFor(s.To), zfs.BookmarkFullName(rp.req.Dataset, zfs.LastSentBookmark)}
	rp.obs.StepDone(*st, time.Since(start))
	return nil
}

func pointShort(full string) string {
	if i := strings.IndexAny(full, "@#"); i >= 0 {
		return full[i+1:]
	}
	return full
}

// transfer pipes `zfs send` into `zfs receive` through an io.Pipe between
// two Runner.Run calls (no shell), counting the stream's bytes. The
// first side to fail is the error; the other side is stopped.
func (rp *replication) transfer(ctx context.Context, s zfs.Send, force bool, prog *counter) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	// prog counts what the pipe took.
	cw := io.MultiWriter(pw, prog)
	var first atomic.Int32 // 1: the sender failed first, 2: the receiver
	sendDone := make(chan error, 1)
	go func() {
		err := rp.snd.Send(ctx, s, cw)
		if err != nil {
			first.CompareAndSwap(0, 1)
		}
		pw.CloseWithError(err) // nil: the receiver sees EOF
		sendDone <- err
	}()
	rerr := rp.rcv.Receive(ctx, rp.req.Target, force, pr)
	if rerr != nil {
		first.CompareAndSwap(0, 2)
		cancel() // nobody reads the stream any more
	}
	pr.CloseWithError(errors.New("receiver exited"))
	serr := <-sendDone
	n := prog.n.Load()
	switch {
	case serr == nil && rerr == nil:
		return n, nil
	case serr != nil && (rerr == nil || first.Load() == 1):
		return n, errors.Join(fmt.Errorf("zfs send: %w", zfs.Explain("", serr)), rerr)
	default:
		err := fmt.Errorf("zfs receive: %w", zfs.Explain(rp.side, rerr))
		if serr != nil && ctx.Err() == nil {
			err = errors.Join(err, serr)
		}
		return n, err
	}
}

// transferFailed explains a failed transfer: what zfs refused, and
// whether the partial receive can be resumed.
func (rp *replication) transferFailed(ctx context.Context, s zfs.Send, err error) error {
	switch {
	case errors.Is(err, zfs.ErrDestinationModified):
		err = fmt.Errorf("%w; %s was changed since its last snapshot; --force-rollback discards those changes (zfs receive -F)", err, rp.req.Target)
	case errors.Is(err, zfs.ErrIncrementalMismatch):
		err = fmt.Errorf("%w; %s changed while planning; run replicate again", err, rp.req.Target)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if m, gerr := rp.rcv.Get(cctx, rp.req.Target, "receive_resume_token"); gerr == nil && m["receive_resume_token"] != "" {
		host := ""
		if rp.req.ToHost != "" {
			host = " --to-host " + rp.req.ToHost
		}
		err = fmt.Errorf("%s: %w; the partial receive is saved: dmsnap replicate %s %s%s --resume continues it",
			StepLabel(s), err, rp.req.Dataset, rp.req.Target, host)
	} else {
		err = fmt.Errorf("%s: %w", StepLabel(s), err)
	}
	return err
}

// verify checks that TARGET@<short name> exists with the sent guid.
func (rp *replication) verify(ctx context.Context, s zfs.Send) error {
	name := zfs.SnapshotFullName(rp.req.Target, pointShort(s.To))
	m, err := rp.rcv.Get(ctx, name, "guid")
	if err != nil {
		return fmt.Errorf("verify %s after the receive: %w", name, zfs.Explain(rp.side, err))
	}
	g, err := strconv.ParseUint(m["guid"], 10, 64)
	if err != nil || g != s.ToGUID {
		return fmt.Errorf("%s has guid %s but the sent %s has %d; the target does not hold what was sent, so nothing was bookmarked: %w",
			name, m["guid"], s.To, s.ToGUID, ErrReplicaGUID)
	}
	return nil
}

// Failpoints of [Run], passed to Request.Failpoint, in the order they
// fire after each receive.
const (
	FailpointAfterReceive  = "replicate.after-receive"  // received and verified, nothing recorded on the sender
	FailpointAfterBookmark = "replicate.after-bookmark" // the snapshot's bookmark made, the record not set
	FailpointAfterRecord   = "replicate.after-record"   // the record set, #dmsnap-last-sent not moved
)

// record marks snapshot (on the sender) as replicated to the target: the
// per-snapshot bookmark first, then the replication record, then (with
// moveLast) #dmsnap-last-sent, which is destroyed and made again (not
// atomic: the other two protect the base meanwhile).
func (rp *replication) record(ctx context.Context, snapshot string, guid uint64, moveLast bool) error {
	fail := func(what string, err error) error {
		return fmt.Errorf("%s reached %s, but %s failed (run replicate again to redo it): %w",
			snapshot, rp.req.Target, what, zfs.Explain("", err))
	}
	bm := zfs.BookmarkFor(snapshot)
	if err := rp.snd.Bookmark(ctx, snapshot, bm); errors.Is(err, zfs.ErrExists) {
		m, gerr := rp.snd.Get(ctx, bm, "guid")
		if gerr != nil {
			return fail("reading bookmark "+bm, gerr)
		}
		if m["guid"] != strconv.FormatUint(guid, 10) {
			return fmt.Errorf("bookmark %s exists with guid %s, not %s's %d: rename or destroy it: %w", bm, m["guid"], snapshot, guid, err)
		}
	} else if err != nil {
		return fail("bookmark "+bm, err)
	}
	rp.failpoint(FailpointAfterBookmark)
	id := TargetID(rp.req.ToHost, rp.req.Target)
	if err := rp.snd.SetUserProperty(ctx, rp.req.Dataset, RecordProperty(id), fmt.Sprintf("%d %s", guid, id)); err != nil {
		return fail("recording the replication", err)
	}
	rp.failpoint(FailpointAfterRecord)
	if moveLast {
		if err := rp.snd.MoveBookmark(ctx, snapshot, zfs.BookmarkFullName(rp.req.Dataset, zfs.LastSentBookmark)); err != nil {
			return fail("moving #"+zfs.LastSentBookmark, err)
		}
	}
	return nil
}

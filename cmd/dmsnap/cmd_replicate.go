package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dmsnap/dmsnap/internal/lock"
	"github.com/dmsnap/dmsnap/lvm"
	"github.com/dmsnap/dmsnap/metrics"
	"github.com/dmsnap/dmsnap/replicate"
	"github.com/dmsnap/dmsnap/zfs"
	"github.com/urfave/cli/v2"
)

// replicateOptions are the arguments of `dmsnap replicate`.
type replicateOptions struct {
	Dataset, Target string
	// ToHost is an ssh destination ([user@]host); empty: the target is on
	// this host.
	ToHost        string
	DryRun        bool
	Resume        bool
	ForceRollback bool
	AllowFull     bool
}

// errReplicaGUID: the receiver's copy of a sent snapshot has another guid.
var errReplicaGUID = errors.New("received snapshot's guid differs from the sent one")

// errNothingToResume: --resume without an interrupted receive.
var errNothingToResume = errors.New("no interrupted receive to resume")

const replicateDescription = `Sends the snapshots of DATASET that TARGET lacks: zfs send | zfs receive -s -u TARGET,
through no shell (with --to-host, the receive runs as "ssh -o BatchMode=yes DEST zfs receive ...":
ssh fails instead of prompting, so set up key authentication).

The base is the newest TARGET snapshot whose guid the sender has as a snapshot or, once
pruned, as a bookmark (send -i DATASET#bm). No common guid: a TARGET that does not exist
gets a full send of the newest snapshot; an existing one is refused (unrelated history)
unless --allow-full --force-rollback, which destroys TARGET's snapshots first. TARGET
snapshots newer than the base are refused unless --force-rollback: the first receive then
gets -F (which also discards changes made on TARGET since its last snapshot), and the
snapshots it destroys are printed first. -F is never used otherwise.
Intermediate snapshots go as one send -I stream, or as a chain of send -i when the version
guard forbids -I (userland 2.3.2 on kernel module 2.3.1).

After each receive the received guid is checked against the sent snapshot's; then, on the
sender: the bookmark DATASET#<snapshot>, the record dmsnap:sent-<hash of TARGET> = "<guid>
TARGET" (zfs prune keeps every recorded base and everything newer), and #dmsnap-last-sent
moved to the snapshot.

An interrupted receive (-s) leaves receive_resume_token on TARGET. A later replicate
resumes it first (zfs send -t), says so, and goes on; --resume only resumes it, and fails
if there is none. A token zfs rejects because its snapshot of DATASET is gone is aborted
with zfs receive -A TARGET and the plan made again (not with --resume, which fails
instead). A receive of another dataset is left alone.

--dry-run prints the plan and each step's size from zfs send -nvP, takes no lock and
changes nothing. Progress on stderr: a bar on a terminal, else one JSON line a second
  {"message_type":"replicate_progress","step":1,"steps":2,"send":"-i A B","bytes":..,
   "estimated_bytes":..,"percent":..,"rate_bytes_per_second":..,"eta_seconds":..,"done":..}
and none with --quiet.

`

func newReplicateCommand(gopts *globalOptions) *cli.Command {
	return newReplicateCommandWith(gopts, func() zfsEnv { return defaultZFSEnv(gopts) })
}

func newReplicateCommandWith(gopts *globalOptions, env func() zfsEnv) *cli.Command {
	return &cli.Command{
		Name:        "replicate",
		Usage:       "send a ZFS dataset's new snapshots to another dataset, here or over ssh",
		ArgsUsage:   "DATASET TARGET [--to-host [USER@]HOST] [--dry-run] [--resume] [--force-rollback] [--allow-full]",
		Description: replicateDescription + exitStatusHelp,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to-host", Usage: "receive on this ssh destination ([user@]host)"},
			&cli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "print the plan and estimated sizes; change nothing"},
			&cli.BoolFlag{Name: "resume", Usage: "only resume an interrupted receive"},
			&cli.BoolFlag{Name: "force-rollback", Usage: "let zfs receive -F destroy target snapshots newer than the base (listed first)"},
			&cli.BoolFlag{Name: "allow-full", Usage: "with --force-rollback: overwrite a target with unrelated history by a full send"},
		},
		Action: withArgs(func(c *cli.Context, args []string) error {
			if len(args) != 2 {
				return usageErrorf("replicate needs DATASET TARGET, got %d arguments", len(args))
			}
			opts := replicateOptions{Dataset: args[0], Target: args[1], ToHost: c.String("to-host"),
				DryRun: c.Bool("dry-run"), Resume: c.Bool("resume"), ForceRollback: c.Bool("force-rollback"), AllowFull: c.Bool("allow-full")}
			return runReplicate(c.Context, opts, gopts, env())
		}),
	}
}

// sshDestRE is what --to-host accepts: an ssh destination or alias that
// cannot be taken for an option and needs no quoting.
var sshDestRE = regexp.MustCompile(`^[A-Za-z0-9_\[][A-Za-z0-9_.@:%\[\]/-]*$`)

func (o replicateOptions) check() error {
	if err := checkDatasetArg("replicate DATASET", o.Dataset); err != nil {
		return err
	}
	if err := checkDatasetArg("replicate TARGET", o.Target); err != nil {
		return err
	}
	if o.ToHost != "" {
		if !sshDestRE.MatchString(o.ToHost) {
			return usageErrorf("--to-host %q: want an ssh destination such as backup1 or root@backup1", o.ToHost)
		}
		if err := zfs.CheckRemoteArg(o.Target); err != nil {
			return usageErrorf("TARGET %q cannot go through ssh unquoted (the remote shell would reinterpret it): %w", o.Target, err)
		}
	} else if o.Target == o.Dataset {
		return usageErrorf("TARGET is DATASET itself (%s)", o.Target)
	}
	if o.Resume && (o.AllowFull || o.ForceRollback) {
		return usageErrorf("--resume only resumes the interrupted receive; it takes neither --allow-full nor --force-rollback")
	}
	return nil
}

// jsonReplicate is the result of `replicate --json`.
type jsonReplicate struct {
	Dataset  string `json:"dataset"`
	Target   string `json:"target"`
	ToHost   string `json:"to_host,omitempty"`
	DryRun   bool   `json:"dry_run"`
	UpToDate bool   `json:"up_to_date"`
	// Resumed: an interrupted receive was resumed. Aborted: one was
	// aborted (receive -A) because zfs rejected its token.
	Resumed        bool             `json:"resumed"`
	Aborted        bool             `json:"aborted"`
	Base           *jsonZFSPoint    `json:"base"`
	Destroys       []string         `json:"destroys"`
	Steps          []jsonReplicStep `json:"steps"`
	EstimatedBytes uint64           `json:"estimated_bytes"`
	Bytes          uint64           `json:"bytes"`
	Seconds        float64          `json:"seconds"`
	Warnings       []string         `json:"warnings"`
}

// jsonReplicStep is one send | receive.
type jsonReplicStep struct {
	Kind           string   `json:"kind"` // full, incremental, package (-I), resume
	From           string   `json:"from,omitempty"`
	To             string   `json:"to"`
	ToGUID         uint64   `json:"to_guid,string"`
	Send           []string `json:"send"`    // argv after "zfs"
	Receive        []string `json:"receive"` // argv, with ssh DEST when remote
	EstimatedBytes uint64   `json:"estimated_bytes"`
	Bytes          uint64   `json:"bytes"`
	Seconds        float64  `json:"seconds"`
	Bookmarks      []string `json:"bookmarks,omitempty"`
}

// stepLabel describes a step for people: Send.String, except that a
// resume names the snapshot, not the long token.
func stepLabel(s zfs.Send) string {
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

// replication is one run of replicate.
type replication struct {
	opts     replicateOptions
	gopts    *globalOptions
	env      zfsEnv
	snd, rcv *zfs.Runner
	guard    zfs.Guard
	side     string // "receiver HOST: " for errors of the remote side
	res      jsonReplicate
	sndPts   []zfs.Point
}

func (rp *replication) infof(format string, args ...any) {
	if !rp.gopts.JSON {
		fmt.Fprintf(rp.gopts.stdout, format+"\n", args...)
	}
}

func (rp *replication) warn(msg string) {
	rp.res.Warnings = append(rp.res.Warnings, msg)
	rp.gopts.warn(msg)
}

// replicationTransfer names a replication of dataset for the monitor:
// by the origin that dmsnap ingest fills it from, else by the dataset.
func replicationTransfer(gopts *globalOptions, dataset string, bytes uint64) stateTransfer {
	t := stateTransfer{Op: metrics.Replication, Origin: dataset, At: time.Now().UTC(), Bytes: bytes}
	if st, err := loadState(gopts); err == nil {
		if l, ok := st.Ingest[dataset]; ok {
			t.Pool, t.Origin = l.Pool, l.Origin
		}
	}
	return t
}

func runReplicate(ctx context.Context, opts replicateOptions, gopts *globalOptions, env zfsEnv) error {
	if err := opts.check(); err != nil {
		return err
	}
	rp := &replication{opts: opts, gopts: gopts, env: env, snd: env.local, rcv: env.local,
		res: jsonReplicate{Dataset: opts.Dataset, Target: opts.Target, ToHost: opts.ToHost, DryRun: opts.DryRun,
			Destroys: []string{}, Steps: []jsonReplicStep{}, Warnings: []string{}}}
	if opts.ToHost != "" {
		rp.rcv = env.remote(opts.ToHost)
		rp.side = "receiver " + opts.ToHost + ": "
	}
	start := time.Now()
	if err := rp.versionGuard(ctx); err != nil {
		return err
	}
	if !opts.DryRun {
		l, err := lockDataset(gopts, opts.Dataset, lock.Exclusive)
		if err != nil {
			return err
		}
		defer l.Close()
	}
	err := rp.run(ctx)
	rp.res.Seconds = round3(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	if !opts.DryRun && !rp.res.UpToDate {
		recordTransfer(ctx, gopts, replicationTransfer(gopts, opts.Dataset, rp.res.Bytes))
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, rp.res)
	}
	return nil
}

// versionGuard reads `zfs version` on the sender (and the receiver host):
// a missing program or module is an error saying which; a mismatch is a
// warning; the known-bad pair turns off send -I.
func (rp *replication) versionGuard(ctx context.Context) error {
	vs, err := rp.snd.Version(ctx)
	if err != nil {
		return explainZFS("", err)
	}
	rp.guard = zfs.CheckVersions(vs)
	if rp.guard.Warning != "" {
		rp.warn(rp.guard.Warning)
	}
	if rp.gopts.Verbose {
		fmt.Fprintf(rp.gopts.stderr, "dmsnap: zfs userland %s, kernel module %s: %s\n", vs.Userland, vs.Kernel, rp.guard.Compat)
	}
	if rp.opts.ToHost == "" {
		return nil
	}
	rvs, err := rp.rcv.Version(ctx)
	if err != nil {
		return explainZFS(rp.side, err)
	}
	if g := zfs.CheckVersions(rvs); g.Warning != "" {
		rp.warn("on " + rp.opts.ToHost + ": " + g.Warning)
	}
	if u, ru := vs.Userland, rvs.Userland; ru.Major < u.Major || ru.Major == u.Major && ru.Minor < u.Minor {
		rp.warn(fmt.Sprintf("%s runs zfs %s, older than this host's %s: it may refuse streams that use newer features", rp.opts.ToHost, ru, u))
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
	m, err := rp.rcv.Get(ctx, rp.opts.Target, "receive_resume_token")
	switch {
	case errors.Is(err, zfs.ErrDatasetNotFound):
		// A new target: its parent (or pool) must exist for zfs receive.
		parent := path.Dir(rp.opts.Target)
		if parent == "." {
			return st, fmt.Errorf("%starget %s is a pool root that does not exist: %w", rp.side, rp.opts.Target, zfs.ErrDatasetNotFound)
		}
		ok, err := rp.rcv.Exists(ctx, parent)
		if err != nil {
			return st, explainZFS(rp.side, err)
		}
		if !ok {
			return st, fmt.Errorf("%sthe parent %s of target %s does not exist (create it first, e.g. zfs create -p %s): %w",
				rp.side, parent, rp.opts.Target, parent, zfs.ErrDatasetNotFound)
		}
		return st, nil
	case err != nil:
		return st, explainZFS(rp.side, err)
	}
	st.exists, st.token = true, m["receive_resume_token"]
	if st.points, err = rp.rcv.Points(ctx, rp.opts.Target); err != nil {
		return st, explainZFS(rp.side, err)
	}
	return st, nil
}

func (rp *replication) receiveArgv(force bool) []string {
	a := zfs.ReceiveArgs(rp.opts.Target, force)
	a = append([]string{"zfs"}, a...)
	if rp.opts.ToHost != "" {
		a = append(sshVia(rp.opts.ToHost), a...)
	}
	return a
}

// run plans and replicates: at most one resumed receive, one abort of a
// rejected token, and then the plan's steps.
func (rp *replication) run(ctx context.Context) error {
	var err error
	if rp.sndPts, err = rp.snd.Points(ctx, rp.opts.Dataset); err != nil {
		if errors.Is(err, zfs.ErrDatasetNotFound) {
			return fmt.Errorf("sender dataset %s does not exist: %w", rp.opts.Dataset, err)
		}
		return explainZFS("", err)
	}
	st, err := rp.readReceiver(ctx)
	if err != nil {
		return err
	}
	if rp.opts.Resume && st.token == "" {
		return fmt.Errorf("%s has no receive_resume_token: %w (run replicate without --resume)", rp.opts.Target, errNothingToResume)
	}
	for round := 0; ; round++ {
		if round > 3 {
			return fmt.Errorf("replicate %s: the receiver keeps changing while planning", rp.opts.Target)
		}
		req := replicate.PlanRequest{
			Sender: rp.opts.Dataset, Receiver: rp.opts.Target,
			SenderPoints: rp.sndPts, ReceiverPoints: st.points, ReceiverExists: st.exists, ResumeToken: st.token,
			AllowFull: rp.opts.AllowFull, ForceRollback: rp.opts.ForceRollback,
			IncrementalPackage: rp.guard.SendIncrementalPackage,
		}
		plan, err := replicate.NewPlan(req)
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
	if info.ToName != "" && (zfs.Point{Name: info.ToName}).Dataset() != rp.opts.Dataset {
		return st, false, fmt.Errorf("%s has an interrupted receive of %s, not of %s: finish it with dmsnap replicate %s %s --resume, or abort it with zfs receive -A %s",
			rp.opts.Target, info.ToName, rp.opts.Dataset, (zfs.Point{Name: info.ToName}).Dataset(), rp.opts.Target, rp.opts.Target)
	}
	if errors.Is(err, zfs.ErrResumeTokenInvalid) {
		switch {
		case rp.opts.Resume:
			return st, false, fmt.Errorf("the interrupted receive into %s cannot be resumed: %w; run replicate without --resume to abort it (zfs receive -A) and send again", rp.opts.Target, err)
		case info.ToName == "":
			// Unreadable: it may be another sender's, so leave it.
			return st, false, fmt.Errorf("the interrupted receive into %s cannot be resumed and its token does not say whose it is: %w; abort it with zfs receive -A %s if it is not needed", rp.opts.Target, err, rp.opts.Target)
		}
		rp.warn(fmt.Sprintf("the interrupted receive of %s into %s cannot be resumed (%v); aborting it with zfs receive -A %s and planning again", info.ToName, rp.opts.Target, err, rp.opts.Target))
		rp.res.Aborted = true
		if rp.opts.DryRun {
			// What the abort would leave: a partial full receive
			// (no snapshots yet) takes the dataset with it.
			st.token = ""
			st.exists = len(st.points) > 0
			return st, false, nil
		}
		if err := rp.rcv.AbortReceive(ctx, rp.opts.Target); err != nil {
			return st, false, explainZFS(rp.side, err)
		}
		next, err := rp.readReceiver(ctx)
		return next, false, err
	}
	if err != nil {
		return st, false, explainZFS("", err)
	}
	if !rp.opts.Resume {
		rp.warn(fmt.Sprintf("%s has an interrupted receive of %s; resuming it first", rp.opts.Target, info.ToName))
	}
	rp.res.Resumed = true
	s := zfs.Send{ResumeToken: st.token, To: info.ToName, ToGUID: info.ToGUID}
	if err := rp.step(ctx, s, false, info.EstimateBytes, 1, 1); err != nil {
		return st, false, err
	}
	if rp.opts.DryRun {
		// Replan as if the resumed snapshot had arrived.
		var top uint64
		for _, p := range st.points {
			top = max(top, p.CreateTXG)
		}
		st.points = append(st.points, zfs.Point{Name: zfs.SnapshotFullName(rp.opts.Target, pointShort(info.ToName)), Kind: zfs.Snapshot,
			GUID: info.ToGUID, CreateTXG: top + 1})
		st.token, st.exists = "", true
		return st, rp.opts.Resume, nil
	}
	if rp.opts.Resume {
		rp.infof("resumed: %s now has %s", rp.opts.Target, pointShort(info.ToName))
		return st, true, nil
	}
	next, err := rp.readReceiver(ctx)
	return next, false, err
}

// execute runs the plan's steps.
func (rp *replication) execute(ctx context.Context, plan replicate.Plan, st receiverState) error {
	if plan.Base.Name != "" {
		b := pointJSON(plan.Base, nil)
		rp.res.Base = &b
		rp.infof("base: %s (guid %d) = %s", plan.Base.Name, plan.Base.GUID, plan.ReceiverBase.Name)
	}
	if plan.UpToDate {
		rp.res.UpToDate = true
		rp.infof("%s is up to date with %s", rp.opts.Target, rp.opts.Dataset)
		if !rp.opts.DryRun && plan.Base.Kind == zfs.Snapshot {
			// Redo what an earlier run may not have finished (killed
			// between the receive and the record): move
			// #dmsnap-last-sent if it is missing or older than the
			// base, never back (another target may be ahead).
			last := zfs.BookmarkFullName(rp.opts.Dataset, zfs.LastSentBookmark)
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
		case plan.DestroyFirst && rp.opts.DryRun:
			how = "the full receive would first destroy"
		case plan.DestroyFirst:
			how = "the full receive first destroys"
		case rp.opts.DryRun:
			how = "zfs receive -F would destroy"
		}
		msg := fmt.Sprintf("--force-rollback: %s on %s%s: %s", how, rp.opts.Target, hostSuffix(rp.opts.ToHost), pointNames(plan.Destroys))
		if rp.gopts.JSON {
			rp.gopts.warn(msg) // stdout is the JSON result, written at the end
		} else {
			rp.infof("%s", msg)
		}
	}
	// Every estimate before any change: a send zfs would refuse fails
	// here, with the target untouched.
	ests := make([]uint64, len(plan.Sends))
	for i, s := range plan.Sends {
		est, err := rp.snd.SendEstimate(ctx, s)
		if err != nil {
			return rp.partial(fmt.Errorf("estimate %s: %w", stepLabel(s), explainZFS("", err)))
		}
		ests[i] = est
	}
	if plan.DestroyFirst && !rp.opts.DryRun {
		for _, d := range plan.Destroys {
			if err := rp.rcv.Destroy(ctx, d.Name); err != nil {
				return explainZFS(rp.side, err)
			}
		}
	}
	for i, s := range plan.Sends {
		// --force-rollback: the first receive into an existing target
		// also discards changes made there since its last snapshot.
		s.Force = s.Force || (i == 0 && rp.opts.ForceRollback && st.exists)
		if err := rp.step(ctx, s, s.Force, ests[i], i+1, len(plan.Sends)); err != nil {
			return rp.partial(err)
		}
	}
	if rp.opts.DryRun {
		rp.infof("dry run: estimated %s in %d step(s); nothing changed", humanBytes(rp.res.EstimatedBytes), len(rp.res.Steps))
	}
	return nil
}

func hostSuffix(host string) string {
	if host == "" {
		return ""
	}
	return " (on " + host + ")"
}

func pointNames(pts []zfs.Point) string {
	s := make([]string, len(pts))
	for i, p := range pts {
		s[i] = p.Name
	}
	return strings.Join(s, ", ")
}

// partial wraps a failure that came after some steps were received.
func (rp *replication) partial(err error) error {
	if rp.opts.DryRun || len(rp.res.Steps) == 0 {
		return err
	}
	last := rp.res.Steps[len(rp.res.Steps)-1].To
	return partialError{fmt.Errorf("replicate %s: %d step(s) done (%s has %s), then: %w",
		rp.opts.Target, len(rp.res.Steps), rp.opts.Target, pointShort(last), err)}
}

// step runs (or with --dry-run prints) one send | receive, then checks
// the received guid and records it on the sender.
func (rp *replication) step(ctx context.Context, s zfs.Send, force bool, est uint64, i, n int) error {
	js := jsonReplicStep{Kind: stepKind(s), From: s.From, To: s.To, ToGUID: s.ToGUID,
		Send: zfs.SendArgs(s), Receive: rp.receiveArgv(force), EstimatedBytes: est}
	rp.res.EstimatedBytes += est
	verb := "step"
	if rp.opts.DryRun {
		verb = "would run"
	}
	rp.infof("%s %d/%d: zfs %s | %s  (estimated %s)", verb, i, n, strings.Join(js.Send, " "), strings.Join(js.Receive, " "), humanBytes(est))
	if rp.opts.DryRun {
		rp.res.Steps = append(rp.res.Steps, js)
		return nil
	}
	start := time.Now()
	prog := newTransferProgress(rp.gopts, rp.env.isTTY, fmt.Sprintf("%d/%d %s", i, n, pointShort(s.To)),
		jsonTransferProgress{MessageType: "replicate_progress", Step: i, Steps: n, Send: stepLabel(s), EstimatedBytes: est})
	bytes, err := rp.transfer(ctx, s, force, prog)
	prog.finish(err == nil)
	js.Bytes, js.Seconds = uint64(bytes), round3(time.Since(start).Seconds())
	rp.res.Bytes += js.Bytes
	if err != nil {
		return rp.transferFailed(ctx, s, err)
	}
	if err := rp.verify(ctx, s); err != nil {
		return err
	}
	rp.res.Steps = append(rp.res.Steps, js)
	lvm.Failpoint(fpReplicateAfterReceive)
	if err := rp.record(ctx, s.To, s.ToGUID, true); err != nil {
		return err
	}
	st := &rp.res.Steps[len(rp.res.Steps)-1]
	st.Bookmarks = []string{zfs.BookmarkFor(s.To), zfs.BookmarkFullName(rp.opts.Dataset, zfs.LastSentBookmark)}
	rp.infof("sent %s in %v; %s has %s (guid %d)", humanBytes(js.Bytes), time.Since(start).Round(time.Millisecond),
		rp.opts.Target, pointShort(s.To), s.ToGUID)
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
func (rp *replication) transfer(ctx context.Context, s zfs.Send, force bool, prog *transferProgress) (int64, error) {
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
	rerr := rp.rcv.Receive(ctx, rp.opts.Target, force, pr)
	if rerr != nil {
		first.CompareAndSwap(0, 2)
		cancel() // nobody reads the stream any more
	}
	pr.CloseWithError(errors.New("receiver exited"))
	serr := <-sendDone
	n := prog.bytes.Load()
	switch {
	case serr == nil && rerr == nil:
		return n, nil
	case serr != nil && (rerr == nil || first.Load() == 1):
		return n, errors.Join(fmt.Errorf("zfs send: %w", explainZFS("", serr)), rerr)
	default:
		err := fmt.Errorf("zfs receive: %w", explainZFS(rp.side, rerr))
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
		err = fmt.Errorf("%w; %s was changed since its last snapshot; --force-rollback discards those changes (zfs receive -F)", err, rp.opts.Target)
	case errors.Is(err, zfs.ErrIncrementalMismatch):
		err = fmt.Errorf("%w; %s changed while planning; run replicate again", err, rp.opts.Target)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if m, gerr := rp.rcv.Get(cctx, rp.opts.Target, "receive_resume_token"); gerr == nil && m["receive_resume_token"] != "" {
		host := ""
		if rp.opts.ToHost != "" {
			host = " --to-host " + rp.opts.ToHost
		}
		err = fmt.Errorf("%s: %w; the partial receive is saved: dmsnap replicate %s %s%s --resume continues it",
			stepLabel(s), err, rp.opts.Dataset, rp.opts.Target, host)
	} else {
		err = fmt.Errorf("%s: %w", stepLabel(s), err)
	}
	return err
}

// verify checks that TARGET@<short name> exists with the sent guid.
func (rp *replication) verify(ctx context.Context, s zfs.Send) error {
	name := zfs.SnapshotFullName(rp.opts.Target, pointShort(s.To))
	m, err := rp.rcv.Get(ctx, name, "guid")
	if err != nil {
		return fmt.Errorf("verify %s after the receive: %w", name, explainZFS(rp.side, err))
	}
	g, err := strconv.ParseUint(m["guid"], 10, 64)
	if err != nil || g != s.ToGUID {
		return fmt.Errorf("%s has guid %s but the sent %s has %d; the target does not hold what was sent, so nothing was bookmarked: %w",
			name, m["guid"], s.To, s.ToGUID, errReplicaGUID)
	}
	return nil
}

// Failpoints of replicate (lvm.Failpoint), in the order they fire after
// each receive.
const (
	fpReplicateAfterReceive  = "replicate.after-receive"  // received and verified, nothing recorded on the sender
	fpReplicateAfterBookmark = "replicate.after-bookmark" // the snapshot's bookmark made, the record not set
	fpReplicateAfterRecord   = "replicate.after-record"   // the record set, #dmsnap-last-sent not moved
)

// record marks snapshot (on the sender) as replicated to the target: the
// per-snapshot bookmark first, then the replication record, then (with
// moveLast) #dmsnap-last-sent, which is destroyed and made again (not
// atomic: the other two protect the base meanwhile).
func (rp *replication) record(ctx context.Context, snapshot string, guid uint64, moveLast bool) error {
	fail := func(what string, err error) error {
		return fmt.Errorf("%s reached %s, but %s failed (run replicate again to redo it): %w",
			snapshot, rp.opts.Target, what, explainZFS("", err))
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
	lvm.Failpoint(fpReplicateAfterBookmark)
	id := targetID(rp.opts.ToHost, rp.opts.Target)
	if err := rp.snd.SetUserProperty(ctx, rp.opts.Dataset, sentProp(id), fmt.Sprintf("%d %s", guid, id)); err != nil {
		return fail("recording the replication", err)
	}
	lvm.Failpoint(fpReplicateAfterRecord)
	if moveLast {
		if err := rp.snd.MoveBookmark(ctx, snapshot, zfs.BookmarkFullName(rp.opts.Dataset, zfs.LastSentBookmark)); err != nil {
			return fail("moving #"+zfs.LastSentBookmark, err)
		}
	}
	return nil
}

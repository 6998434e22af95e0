package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/dmsnap/dmsnap/internal/failpoint"
	"github.com/dmsnap/dmsnap/internal/lock"
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

// Errors of replicate (replicate.ErrReplicaGUID, replicate.ErrNothingToResume).
var (
	errReplicaGUID     = replicate.ErrReplicaGUID
	errNothingToResume = replicate.ErrNothingToResume
)

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
	req := replicate.Request{Dataset: opts.Dataset, Target: opts.Target, ToHost: opts.ToHost,
		Sender: env.local, Receiver: env.local,
		DryRun: opts.DryRun, Resume: opts.Resume, ForceRollback: opts.ForceRollback, AllowFull: opts.AllowFull,
		Lock:      func() (io.Closer, error) { return lockDataset(gopts, opts.Dataset, lock.Exclusive) },
		Observer:  &replicateObserver{gopts: gopts, isTTY: env.isTTY, dry: opts.DryRun, dataset: opts.Dataset, target: opts.Target},
		Failpoint: failpoint.Hit}
	if opts.ToHost != "" {
		req.Receiver, req.ReceiveVia = env.remote(opts.ToHost), sshVia(opts.ToHost)
	}
	res, err := replicate.Run(ctx, req)
	if pe := (*replicate.PartialError)(nil); errors.As(err, &pe) {
		return partialError{pe.Err}
	}
	if err != nil {
		return err
	}
	if !opts.DryRun && !res.UpToDate {
		recordTransfer(ctx, gopts, replicationTransfer(gopts, opts.Dataset, res.Bytes))
	}
	if gopts.JSON {
		return writeJSON(gopts.stdout, jsonOfReplication(res))
	}
	return nil
}

// jsonOfReplication is the JSON form of a replicate.Result.
func jsonOfReplication(r replicate.Result) jsonReplicate {
	j := jsonReplicate{Dataset: r.Dataset, Target: r.Target, ToHost: r.ToHost, DryRun: r.DryRun, UpToDate: r.UpToDate,
		Resumed: r.Resumed, Aborted: r.Aborted, Destroys: r.Destroys, Steps: []jsonReplicStep{},
		EstimatedBytes: r.EstimatedBytes, Bytes: r.Bytes, Seconds: r.Seconds, Warnings: r.Warnings}
	if r.Base != nil {
		b := pointJSON(*r.Base, nil)
		j.Base = &b
	}
	for _, s := range r.Steps {
		j.Steps = append(j.Steps, jsonReplicStep{Kind: s.Kind, From: s.From, To: s.To, ToGUID: s.ToGUID, Send: s.Send, Receive: s.Receive,
			EstimatedBytes: s.EstimatedBytes, Bytes: s.Bytes, Seconds: s.Seconds, Bookmarks: s.Bookmarks})
	}
	return j
}

// replicateObserver prints a replication: lines for people on stdout
// (not with --json), warnings and progress on stderr.
type replicateObserver struct {
	gopts           *globalOptions
	isTTY, dry      bool
	dataset, target string
	prog            *transferProgress
}

func (o *replicateObserver) infof(format string, args ...any) {
	if !o.gopts.JSON {
		fmt.Fprintf(o.gopts.stdout, format+"\n", args...)
	}
}

func (o *replicateObserver) Versions(vs zfs.Versions, g zfs.Guard) {
	if o.gopts.Verbose {
		fmt.Fprintf(o.gopts.stderr, "dmsnap: zfs userland %s, kernel module %s: %s\n", vs.Userland, vs.Kernel, g.Compat)
	}
}

func (o *replicateObserver) Warn(msg string) { o.gopts.warn(msg) }

func (o *replicateObserver) Base(snd, rcv zfs.Point) {
	o.infof("base: %s (guid %d) = %s", snd.Name, snd.GUID, rcv.Name)
}

func (o *replicateObserver) UpToDate() {
	o.infof("%s is up to date with %s", o.target, o.dataset)
}

func (o *replicateObserver) Destroys(msg string) {
	if o.gopts.JSON {
		o.gopts.warn(msg) // stdout is the JSON result, written at the end
	} else {
		o.infof("%s", msg)
	}
}

func (o *replicateObserver) StepStart(s replicate.Step, i, n int) {
	verb := "step"
	if o.dry {
		verb = "would run"
	}
	o.infof("%s %d/%d: zfs %s | %s  (estimated %s)", verb, i, n, strings.Join(s.Send, " "), strings.Join(s.Receive, " "), humanBytes(s.EstimatedBytes))
}

func (o *replicateObserver) TransferStart(s zfs.Send, est uint64, i, n int) io.Writer {
	o.prog = newTransferProgress(o.gopts, o.isTTY, fmt.Sprintf("%d/%d %s", i, n, pointShort(s.To)),
		jsonTransferProgress{MessageType: "replicate_progress", Step: i, Steps: n, Send: replicate.StepLabel(s), EstimatedBytes: est})
	return o.prog
}

func (o *replicateObserver) TransferEnd(ok bool) { o.prog.finish(ok) }

func (o *replicateObserver) StepDone(s replicate.Step, elapsed time.Duration) {
	o.infof("sent %s in %v; %s has %s (guid %d)", humanBytes(s.Bytes), elapsed.Round(time.Millisecond), o.target, pointShort(s.To), s.ToGUID)
}

func (o *replicateObserver) Resumed(short string) { o.infof("resumed: %s now has %s", o.target, short) }

func (o *replicateObserver) DryRunDone(est uint64, steps int) {
	o.infof("dry run: estimated %s in %d step(s); nothing changed", humanBytes(est), steps)
}

// pointShort returns the part of a snapshot or bookmark name after @ or #.
func pointShort(full string) string {
	if i := strings.IndexAny(full, "@#"); i >= 0 {
		return full[i+1:]
	}
	return full
}

// Failpoints of replicate (replicate.Failpoint*).
const (
	fpReplicateAfterReceive  = replicate.FailpointAfterReceive
	fpReplicateAfterBookmark = replicate.FailpointAfterBookmark
	fpReplicateAfterRecord   = replicate.FailpointAfterRecord
)

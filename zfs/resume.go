package zfs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
)

// ResumeInfo is what a receive_resume_token says about the interrupted
// stream, as `zfs send -nvP -t TOKEN` prints it.
type ResumeInfo struct {
	// ToName is the full name of the sender snapshot being sent
	// (pool/vol@s); ToGUID its guid.
	ToName string
	ToGUID uint64
	// FromGUID is the incremental source's guid, 0 for a full stream.
	FromGUID uint64
	// EstimateBytes is the size of what is left to send (the size line).
	EstimateBytes uint64
}

// ParseResumeEstimate parses the standard output of `zfs send -nvP -t
// TOKEN`: "resume token contents:", the token's nvlist as nvlist_print
// prints it ("nvlist version: 0", then one "\tkey = value" line per pair,
// uint64 values as 0x%llx), the per-stream line and "size\t<bytes>" (from
// OpenZFS 2.3.2 lib/libzfs/libzfs_sendrecv.c zfs_send_resume_impl_cb_impl,
// which prints to stdout in a dry run, and lib/libnvpair/libnvpair.c
// nvprint_uint64/nvprint_string; verified in the VM tier (zfs 2.3.2,
// kernel 6.1) on an incremental receive cut mid-stream). Errors wrap
// [ErrSyntax].
func ParseResumeEstimate(out []byte) (ResumeInfo, error) {
	size, err := ParseSendEstimate(out)
	if err != nil {
		return ResumeInfo{}, err
	}
	ri, err := parseResumeContents(out)
	if err != nil {
		return ResumeInfo{}, err
	}
	ri.EstimateBytes = size
	return ri, nil
}

// parseResumeContents reads toname, toguid and fromguid from the "resume
// token contents:" block, which zfs prints before it looks the snapshots
// up (so also when they are gone).
func parseResumeContents(out []byte) (ResumeInfo, error) {
	var ri ResumeInfo
	inToken := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "resume token contents:" {
			inToken = true
			continue
		}
		if !inToken {
			continue
		}
		key, val, ok := strings.Cut(strings.TrimSpace(line), " = ")
		if !ok {
			if strings.HasPrefix(line, "nvlist version:") {
				continue
			}
			inToken = false // the per-stream and size lines follow
			continue
		}
		switch key {
		case "toname":
			ri.ToName = val
		case "toguid", "fromguid":
			n, err := strconv.ParseUint(strings.TrimPrefix(val, "0x"), 16, 64)
			if err != nil || !strings.HasPrefix(val, "0x") {
				return ResumeInfo{}, fmt.Errorf("zfs send -nvP -t: %s %q: %w", key, val, ErrSyntax)
			}
			if key == "toguid" {
				ri.ToGUID = n
			} else {
				ri.FromGUID = n
			}
		}
	}
	if err := sc.Err(); err != nil {
		return ResumeInfo{}, fmt.Errorf("zfs send -nvP -t: %v: %w", err, ErrSyntax)
	}
	if ri.ToGUID == 0 || ri.ToName == "" {
		return ResumeInfo{}, fmt.Errorf("zfs send -nvP -t printed no toname/toguid in %q: %w", out, ErrSyntax)
	}
	if err := checkPointName(ri.ToName, Snapshot); err != nil {
		return ResumeInfo{}, fmt.Errorf("zfs send -nvP -t: toname: %w", err)
	}
	return ri, nil
}

// ResumeInfo runs `zfs send -nvP -t token` on the sender and parses it.
// Errors: [ErrResumeTokenInvalid] (corrupt, or its snapshots are gone:
// abort the receive with [Runner.AbortReceive] and plan again),
// [ErrSyntax]. With ErrResumeTokenInvalid, the returned info still names
// the token's snapshot (ToName, ToGUID; no estimate) when zfs could decode
// the token, so a caller can tell whose interrupted receive it is.
func (r *Runner) ResumeInfo(ctx context.Context, token string) (ResumeInfo, error) {
	out, err := r.output(ctx, "(resume)", SendEstimateArgs(Send{ResumeToken: token})...)
	if err != nil {
		ri, perr := parseResumeContents(out)
		if perr != nil {
			ri = ResumeInfo{}
		}
		return ri, err
	}
	return ParseResumeEstimate(out)
}

// AbortReceive runs `zfs receive -A target`: it discards the partial state
// of an interrupted `receive -s` (for a full stream, the partially
// received dataset itself). Errors: [ErrDatasetNotFound].
func (r *Runner) AbortReceive(ctx context.Context, target string) error {
	if err := CheckDatasetName(target); err != nil {
		return err
	}
	return r.Run(ctx, BinZFS, []string{"receive", "-A", target}, target, nil, nil)
}

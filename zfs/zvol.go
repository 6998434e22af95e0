package zfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ZvolIDPath returns zvol_id from PATH (where a private OpenZFS userland
// puts its udev helpers), else where zfsutils-linux installs it: it lives
// in udev's directory, which is not in PATH.
func ZvolIDPath() string {
	if p, err := exec.LookPath(BinZvolID); err == nil {
		return p
	}
	for _, p := range []string{"/lib/udev/zvol_id", "/usr/lib/udev/zvol_id"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/lib/udev/zvol_id"
}

// ZvolDevice waits up to timeout for the block device of the zvol dataset
// and returns its path: /dev/zvol/DATASET where udev made that link,
// otherwise the /dev/zdN that zvol_id (BLKZNAME, run through [Runner.Run])
// names dataset. zvol nodes appear asynchronously after `zfs create` and
// rollback. The device is local: a Runner with Via set is refused.
func (r *Runner) ZvolDevice(ctx context.Context, dataset string, timeout time.Duration) (string, error) {
	if len(r.Via) > 0 {
		return "", fmt.Errorf("zvol %s: the block device of a remote zvol: %w", dataset, errors.ErrUnsupported)
	}
	deadline := time.Now().Add(timeout)
	for {
		link := filepath.Join("/dev/zvol", dataset)
		if p, err := filepath.EvalSymlinks(link); err == nil {
			return p, nil
		}
		nodes, _ := filepath.Glob("/dev/zd*")
		for _, n := range nodes {
			if strings.ContainsRune(strings.TrimPrefix(n, "/dev/zd"), 'p') {
				continue // a partition
			}
			var out bytes.Buffer
			if err := r.Run(ctx, BinZvolID, []string{n}, dataset, nil, &out); err == nil && strings.TrimSpace(out.String()) == dataset {
				return n, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no block device for zvol %s after %s (no /dev/zvol link, no /dev/zd* named so by zvol_id): %w", dataset, timeout, os.ErrNotExist)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

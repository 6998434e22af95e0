package ingest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ZvolDevice waits up to timeout for the block device of the zvol dataset
// and returns its path: /dev/zvol/DATASET where udev made that link,
// otherwise the /dev/zdN that /lib/udev/zvol_id (BLKZNAME) names dataset.
// zvol nodes appear asynchronously after `zfs create` and rollback.
func ZvolDevice(ctx context.Context, dataset string, timeout time.Duration) (string, error) {
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
			out, err := exec.CommandContext(ctx, "/lib/udev/zvol_id", n).Output()
			if err == nil && strings.TrimSpace(string(out)) == dataset {
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

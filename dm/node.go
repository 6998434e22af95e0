package dm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/dmsnap/dmsnap/internal/sys"
)

// MapperDir is where device-mapper nodes are named.
const MapperDir = "/dev/mapper"

// udevControl exists while systemd-udevd runs.
const udevControl = "/run/udev/control"

// nodeWaitTimeout bounds how long EnsureNode waits for udev.
const nodeWaitTimeout = 10 * time.Second

// DevicePath returns /dev/mapper/<name>. The node may not exist: use
// [EnsureNode], or [Info.BlockPath] which devtmpfs always provides.
func DevicePath(name string) string { return filepath.Join(MapperDir, name) }

// UdevRunning reports whether udev manages device nodes here
// (/run/udev/control exists). The test VM has no udev.
func UdevRunning() bool {
	_, err := os.Stat(udevControl)
	return err == nil
}

func checkNodeName(name string) error {
	if name == "" || name == "." || name == ".." || name == "control" || filepath.Base(name) != name {
		return fmt.Errorf("device name %q cannot name a node in %s", name, MapperDir)
	}
	return nil
}

// EnsureNode makes /dev/mapper/<info.Name> usable and returns its path.
// With udev running it waits (up to 10 s, or until ctx ends) for udev's
// symlink instead of racing udev; without udev it creates a block node
// for info.Dev itself (replacing a stale node with another number), as
// libdm does with DM_DISABLE_UDEV.
func EnsureNode(ctx context.Context, info Info) (string, error) {
	if err := checkNodeName(info.Name); err != nil {
		return "", err
	}
	path := DevicePath(info.Name)
	if !UdevRunning() {
		return path, mknodMapper(info.Name, info.Dev)
	}
	ctx, cancel := context.WithTimeout(ctx, nodeWaitTimeout)
	defer cancel()
	for {
		fi, err := os.Stat(path)
		if err == nil {
			if major, minor, ok := sys.BlockDevNum(fi); ok && major == info.Dev.Major && minor == info.Dev.Minor {
				return path, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for udev to create %s (%s): %w", path, info.Dev, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// RemoveNode removes the /dev/mapper/<name> block node that EnsureNode
// created without udev. It leaves symlinks (udev's) alone and ignores a
// missing node; with udev running it does nothing.
func RemoveNode(name string) error {
	if UdevRunning() {
		return nil
	}
	return removeMapperNode(name)
}

func mknodMapper(name string, dev DevNum) error {
	if err := checkNodeName(name); err != nil {
		return err
	}
	path := DevicePath(name)
	if fi, err := os.Lstat(path); err == nil {
		if major, minor, ok := sys.BlockDevNum(fi); ok && major == dev.Major && minor == dev.Minor {
			return nil
		}
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(MapperDir, 0o755); err != nil {
		return err
	}
	err := sys.MknodBlock(path, 0o600, dev.Major, dev.Minor)
	if errors.Is(err, fs.ErrExist) {
		return nil // a concurrent creator won
	}
	return err
}

func removeMapperNode(name string) error {
	if checkNodeName(name) != nil {
		return nil
	}
	path := DevicePath(name)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
		return nil // not our block node
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// Preparation (apt-get download, dpkg-deb -x, the module build) runs in a
// child process in a private mount namespace in which the host's system
// directories are read-only. A step that would write to /etc/apt,
// /lib/modules, /usr or /var/lib/dkms then fails loudly (EROFS) instead of
// silently changing the host: the cache under the repository is the only
// place preparation can write, besides temporary files and Go's caches.

// sandboxEnv marks the child: main enters the sandbox before anything else.
const sandboxEnv = "VMRUN_SANDBOX"

// protectedDirs are made read-only in the sandbox, with every mount below
// them. /lib, /bin and /sbin are symlinks into /usr on a merged-/usr system;
// on an older one they are mount points or directories of / and listed too.
var protectedDirs = []string{"/etc", "/usr", "/var", "/opt", "/boot", "/lib", "/lib64", "/bin", "/sbin"}

// enterSandbox makes protectedDirs read-only for this process's mount
// namespace. It must run in a process started with CLONE_NEWNS: the
// propagation is made private first, so nothing leaks to the host's
// namespace.
func enterSandbox() error {
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("sandbox: make / private: %w", err)
	}
	for _, d := range protectedDirs {
		st, err := os.Lstat(d)
		if err != nil || !st.IsDir() {
			continue // absent, or a symlink into a protected directory
		}
		if err := syscall.Mount(d, d, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("sandbox: bind %s: %w", d, err)
		}
	}
	mounts, err := mountPoints()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if !underProtected(m) {
			continue
		}
		if err := syscall.Mount("", m, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("sandbox: remount %s read-only: %w", m, err)
		}
	}
	return nil
}

func underProtected(p string) bool {
	for _, d := range protectedDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// mountPoints lists this namespace's mount points from mountinfo.
func mountPoints() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint ...; octal escapes for spaces.
		if f := strings.Fields(sc.Text()); len(f) > 4 {
			out = append(out, unescapeMount(f[4]))
		}
	}
	return out, sc.Err()
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// sandboxed returns cmd set up to run in a new mount namespace with
// enterSandbox applied by the child. Without root there is nothing to
// protect against (the host's system directories are not writable), so
// the command runs as it is.
func sandboxed(cmd *exec.Cmd) *exec.Cmd {
	if os.Geteuid() != 0 {
		return cmd
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	cmd.Env = append(os.Environ(), sandboxEnv+"=1")
	return cmd
}

// errNotSandboxed reports a child that was told to sandbox itself but was
// not started in a namespace of its own.
var errNotSandboxed = errors.New("sandbox: not started with CLONE_NEWNS")

// inOwnMountNamespace compares this process's mount namespace with its
// parent's, so a child never remounts the host's own namespace.
func inOwnMountNamespace() error {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	parent, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if self == parent {
		return errNotSandboxed
	}
	return nil
}

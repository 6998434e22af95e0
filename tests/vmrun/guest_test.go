package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func TestKvmUsable(t *testing.T) {
	intel := "processor\t: 0\nflags\t\t: fpu vme de pse vmx ept\nbugs\t\t: spectre_v1\n"
	amd := "processor\t: 0\nflags\t\t: fpu svm npt\n"
	pvm := "processor\t: 0\nflags\t\t: fpu vme de pse hypervisor\nvmx flags\t: none\n"
	for _, tc := range []struct {
		name    string
		cpuinfo string
		openErr error
		want    bool
	}{
		{"intel", intel, nil, true},
		{"amd", amd, nil, true},
		{"no vmx/svm flag (PVM host)", pvm, nil, false},
		{"no /dev/kvm", intel, os.ErrNotExist, false},
		{"empty cpuinfo", "", nil, false},
	} {
		if got := kvmUsable(tc.cpuinfo, tc.openErr); got != tc.want {
			t.Errorf("%s: kvmUsable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestChooseAccelHere pins the finding of vm.md for this machine class:
// without vmx/svm in /proc/cpuinfo, auto must resolve to TCG.
func TestChooseAccelHere(t *testing.T) {
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skip("no /proc/cpuinfo")
	}
	f, openErr := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if openErr == nil {
		f.Close()
	}
	want := "tcg"
	if kvmUsable(string(cpuinfo), openErr) {
		want = "kvm"
	}
	if got, _ := chooseAccel("auto"); got != want {
		t.Errorf("chooseAccel(auto) = %s, want %s", got, want)
	}
	for mode, want := range map[string]string{"on": "kvm", "off": "tcg"} {
		if got, _ := chooseAccel(mode); got != want {
			t.Errorf("chooseAccel(%s) = %s, want %s", mode, got, want)
		}
	}
}

func TestParseConsole(t *testing.T) {
	for _, tc := range []struct {
		name, console string
		code          int
		ok            bool
		failure       string
	}{
		{"exit", "[    2.1] loop: module loaded\n[    4.2] @@VMRUN_EXIT=7@@\n[    4.3] reboot: Power down\n", 7, true, ""},
		{"exit zero", "[ 4.2] @@VMRUN_EXIT=0@@\r\n", 0, true, ""},
		{"last wins", "@@VMRUN_EXIT=1@@\n@@VMRUN_EXIT=42@@\n", 42, true, ""},
		{"panic", "[ 3.0] Kernel panic - not syncing: Attempted to kill init!\n", 0, false, ""},
		{"init failure", "[ 3.0] @@VMRUN_FAIL=insmod 9p@@\n", 0, false, "insmod 9p"},
		{"out of range", "@@VMRUN_EXIT=300@@\n", 0, false, ""},
		{"empty", "", 0, false, ""},
	} {
		code, ok, failure := parseConsole(tc.console)
		if code != tc.code || ok != tc.ok || failure != tc.failure {
			t.Errorf("%s: parseConsole = %d %v %q, want %d %v %q", tc.name, code, ok, failure, tc.code, tc.ok, tc.failure)
		}
	}
}

func TestTailLines(t *testing.T) {
	if got := tailLines("a\nb\nc\nd\n", 2); got != "c\nd\n" {
		t.Errorf("tailLines = %q", got)
	}
	if got := tailLines("a\nb", 5); got != "a\nb\n" {
		t.Errorf("tailLines short = %q", got)
	}
}

func TestCrStripper(t *testing.T) {
	in := "a\r\nb\rc\r\n\r\nend\r"
	var out bytes.Buffer
	c := &crStripper{w: &out}
	// One byte at a time: a "\r" split from its "\n" must still go.
	r := iotest.OneByteReader(strings.NewReader(in))
	buf := make([]byte, 1)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				t.Fatal(werr)
			}
		}
		if err != nil {
			break
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "a\nb\rc\n\nend\r"; got != want {
		t.Errorf("stripped = %q, want %q", got, want)
	}
}

func TestPlanShares(t *testing.T) {
	root := t.TempDir()
	repo := filepath.Join(root, "repo")
	pkg := filepath.Join(repo, "pkg")
	other := filepath.Join(root, "other")
	for _, d := range []string{pkg, other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	root, _ = filepath.EvalSymlinks(root)
	got := planShares([]string{pkg, repo, "", other, repo + "/", pkg})
	want := []share{
		{Tag: "share0", Path: filepath.Join(root, "other")},
		{Tag: "share1", Path: filepath.Join(root, "repo")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("planShares = %+v, want %+v", got, want)
	}
	if got := planShares([]string{"/"}); len(got) != 1 || got[0].Path != "/" {
		t.Errorf("planShares(/) = %+v", got)
	}
}

func TestGuestEnv(t *testing.T) {
	host := map[string]string{"PATH": "/host/bin:/usr/bin", "GOFLAGS": "-mod=mod", "GOCOVERDIR": "", "SECRET": "x"}
	o := &options{kernel: "backports", env: []string{"A=1", "HOME=/tmp/h", "DMSNAP_IN_VM=0", "A=2", "B=x=y"}}
	got := guestEnv(o, &guestTools{}, func(k string) string { return host[k] })
	want := []string{"PATH=/host/bin:/usr/bin", "HOME=/tmp/h", "DMSNAP_VM_KERNEL=backports", "GOFLAGS=-mod=mod", "A=2", "DMSNAP_IN_VM=1", "B=x=y"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("guestEnv = %q\nwant       %q", got, want)
	}
	got = guestEnv(&options{kernel: "bookworm"}, &guestTools{}, func(string) string { return "" })
	if got[0] != "PATH="+defaultPath || got[len(got)-1] != "DMSNAP_IN_VM=1" {
		t.Errorf("guestEnv without host env = %q", got)
	}
}

// TestRunScript executes the generated run.sh with the host's /bin/sh, as
// the guest does inside the chroot.
func TestRunScript(t *testing.T) {
	dir := t.TempDir()
	weird := filepath.Join(dir, "it's a \"dir\" $HOME")
	if err := os.Mkdir(weird, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &guestSpec{
		Cwd:     weird,
		Env:     []string{"PATH=/usr/bin:/bin", "V=a 'b' $c `d`", "DMSNAP_IN_VM=1"},
		Program: "sh",
		Args:    []string{"-c", `pwd; printf '%s\n' "$V" "$1" "$DMSNAP_IN_VM"; env | grep -c . ; exit 5`, "arg0", "x'y z"},
	}
	script := filepath.Join(dir, "run.sh")
	if err := os.WriteFile(script, []byte(runScript(s)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", script)
	cmd.Env = []string{"LEAK=1"}
	out, err := cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 5 {
		t.Fatalf("exit = %v, want status 5; out %q", err, out)
	}
	// env -i leaves exactly the three variables plus PWD set by sh.
	want := weird + "\na 'b' $c `d`\nx'y z\n1\n4\n"
	if string(out) != want {
		t.Errorf("output = %q, want %q", out, want)
	}

	s.Cwd = filepath.Join(dir, "missing")
	if err := os.WriteFile(script, []byte(runScript(s)), 0o644); err != nil {
		t.Fatal(err)
	}
	err = exec.Command("/bin/sh", script).Run()
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
		t.Errorf("missing cwd: %v, want status %d", err, exitFailure)
	}
}

func TestInitScript(t *testing.T) {
	s := &guestSpec{
		Modules: []string{"dm_mod", "9p"},
		Shares:  []share{{Tag: "share0", Path: "/work/it's"}},
	}
	got := initScript(s)
	for _, want := range []string{
		"for m in dm_mod 9p; do\n",
		"mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /lower",
		`mkdir -p '/newroot/work/it'\''s' && mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 share0 '/newroot/work/it'\''s'`,
		"chroot /newroot /bin/sh /run/vmrun/run.sh </dev/null >/dev/ttyS1 2>&1\n",
		`echo "<2>@@VMRUN_EXIT=$rc@@" >/dev/kmsg`,
		"poweroff -f\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("init script lacks %q:\n%s", want, got)
		}
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		if out, err := exec.Command(sh, "-n", "-c", got).CombinedOutput(); err != nil {
			t.Errorf("init script does not parse: %v: %s", err, out)
		}
	}
}

// fakeBzImage wraps payload in the bzImage fields extractVmlinux reads.
func fakeBzImage(payload []byte, size uint32) []byte {
	const setupSects = 3
	img := make([]byte, (setupSects+1)*512+100)
	img[bootSetupSects] = setupSects
	copy(img[bootHeaderMagic:], "HdrS")
	binary.LittleEndian.PutUint32(img[bootPayloadOffset:], 100)
	binary.LittleEndian.PutUint32(img[bootPayloadLength:], uint32(len(payload)+4))
	img = append(img, payload...)
	img = binary.LittleEndian.AppendUint32(img, size)
	return append(img, "trailing setup data"...)
}

func TestExtractVmlinux(t *testing.T) {
	if _, err := exec.LookPath("gzip"); err != nil {
		t.Skip("gzip not installed")
	}
	exe, err := os.ReadFile("/proc/self/exe") // any ELF will do
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(exe)
	zw.Close()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "vmlinux")
	if err := os.WriteFile(in, fakeBzImage(gz.Bytes(), uint32(len(exe))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := extractVmlinux(context.Background(), in, out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil || !bytes.Equal(got, exe) {
		t.Errorf("vmlinux differs from the original (%d vs %d bytes), %v", len(got), len(exe), err)
	}
	// A wrong size in the trailer is caught.
	if err := os.WriteFile(in, fakeBzImage(gz.Bytes(), uint32(len(exe)+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := extractVmlinux(context.Background(), in, out); err == nil {
		t.Error("size mismatch not reported")
	}
	if err := os.WriteFile(in, []byte("not a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := extractVmlinux(context.Background(), in, out); err == nil {
		t.Error("non-bzImage accepted")
	}
	if _, err := payloadDecompressor([]byte("LZMA?")); err == nil {
		t.Error("unknown compression accepted")
	}
}

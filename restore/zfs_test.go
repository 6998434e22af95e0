package restore

import (
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/dmsnap/dmsnap/zfs"
)

type reply struct {
	stdout string
	stderr string
	fail   bool
}

// scriptExec is a zfs.Executor answering argv strings from a script.
type scriptExec struct {
	t      *testing.T
	script map[string]reply
	calls  []string
}

func (s *scriptExec) Run(_ context.Context, name string, args []string, _ io.Reader, stdout io.Writer) ([]byte, error) {
	key := strings.Join(append([]string{name}, args...), " ")
	s.calls = append(s.calls, key)
	r, ok := s.script[key]
	if !ok {
		s.t.Errorf("unexpected command %q", key)
		return nil, errors.New("exit status 1")
	}
	if stdout != nil {
		io.WriteString(stdout, r.stdout)
	}
	if r.fail {
		return []byte(r.stderr), errors.New("exit status 1")
	}
	return nil, nil
}

func realStream(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(realData + name + ".stream.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const (
	getSnap = "zfs get -Hp -o property,value type,guid,createtxg,volsize "
	getVol  = "zfs get -Hp -o property,value type,guid,volsize,volblocksize,receive_resume_token "
)

func TestZFSSource(t *testing.T) {
	stream := realStream(t, "zfs-2.3.2-v16k-incr-plain")
	missing := "cannot open 'tank/vol@nope': dataset does not exist\n"
	ex := &scriptExec{t: t, script: map[string]reply{
		getSnap + "tank/vol@a":                 {stdout: "type\tsnapshot\nguid\t17706119220354061411\ncreatetxg\t40\nvolsize\t8388608\n"},
		getVol + "tank/vol":                    {stdout: "type\tvolume\nguid\t3\nvolsize\t8388608\nvolblocksize\t16384\nreceive_resume_token\t-\n"},
		getSnap + "tank/fs@a":                  {stdout: "type\tsnapshot\nguid\t5\ncreatetxg\t41\nvolsize\t-\n"},
		getSnap + "tank/vol@nope":              {stderr: missing, fail: true},
		getSnap + "tank/vol@odd":               {stdout: "type\tsnapshot\nguid\tx\ncreatetxg\t41\nvolsize\t8388608\n"},
		"zfs send -i tank/vol@a tank/vol@b":    {stdout: stream},
		"zfs send -i tank/vol@a tank/vol@cut":  {stdout: stream[:len(stream)/2]},
		"zfs send -i tank/vol@a tank/vol@gone": {stderr: "cannot open 'tank/vol@gone': dataset does not exist\n", fail: true},
		"zfs get -Hp -s local -o property,value all tank/vol-dmsnap-restore": {stdout: "volmode\tdev\n"},
	}}
	z := &ZFSSource{R: &zfs.Runner{Exec: ex}}
	ctx := context.Background()
	s, err := z.Snapshot(ctx, "tank/vol@a")
	if err != nil || s != (SnapInfo{Name: "tank/vol@a", GUID: 17706119220354061411, CreateTXG: 40, SizeBytes: 8 << 20, BlockBytes: 16 << 10}) {
		t.Fatalf("%+v %v", s, err)
	}
	for name, want := range map[string]error{"tank/fs@a": zfs.ErrNotAZvol, "tank/vol@nope": zfs.ErrDatasetNotFound,
		"tank/vol@odd": zfs.ErrSyntax, "tank/vol#bm": ErrBadInput} {
		if _, err := z.Snapshot(ctx, name); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	sub, err := z.Increment(ctx, "tank/vol@a", "tank/vol@b")
	if err != nil || len(sub.Written) == 0 || !sub.Incremental() {
		t.Fatalf("%+v %v", sub, err)
	}
	if _, err := z.Increment(ctx, "tank/vol@a", "tank/vol@cut"); err == nil {
		t.Error("a cut stream parsed")
	}
	if _, err := z.Increment(ctx, "tank/vol@a", "tank/vol@gone"); !errors.Is(err, zfs.ErrDatasetNotFound) {
		t.Errorf("failed send: %v", err)
	}
	// A dataset in the clone's place that is not a restore's clone.
	if _, err := z.OpenSnapshot(ctx, "tank/vol@a"); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), CloneProperty) {
		t.Errorf("foreign clone: %v", err)
	}
	for _, c := range ex.calls {
		if strings.Contains(c, "destroy") || strings.Contains(c, "clone ") {
			t.Errorf("ran %q", c)
		}
	}
}

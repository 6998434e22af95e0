//go:build linux

package sys_test

import (
	"testing"

	"github.com/dmsnap/dmsnap/internal/sys"
	"github.com/dmsnap/dmsnap/internal/testutil"
)

// TestBufferFullRetry
//   - DM_LIST_VERSIONS with a first buffer of 320 bytes (header + 8) does
//     not fit: the kernel sets DM_BUFFER_FULL_FLAG, Do doubles and retries
//   - the result equals the one obtained with the default 16 KiB buffer
func TestBufferFullRetry(t *testing.T) {
	testutil.RequireKernel(t)
	c, err := sys.OpenControl()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := sys.DMRequest{Cmd: sys.DM_LIST_VERSIONS_CMD, Version: [3]uint32{4, 0, 0}}
	r, err := c.Do(&req)
	if err != nil {
		t.Fatal(err)
	}
	want, err := sys.DecodeVersions(r.Data)
	if err != nil || len(want) < 4 {
		t.Fatalf("versions %v, %v", want, err)
	}
	c.SetBufferStart(sys.SizeofDmIoctl + 8)
	r, err = c.Do(&req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sys.DecodeVersions(r.Data)
	if err != nil || len(got) != len(want) {
		t.Fatalf("with a small first buffer: %v, %v; want %v", got, err, want)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

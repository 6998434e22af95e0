package blockdev

import (
	"os"
	"path/filepath"
	"testing"
)

// TestNotABlockDevice: a regular file has no device number, is not a dm
// device and has no holders.
func TestNotABlockDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := DevNum(path); err == nil {
		t.Error("DevNum of a regular file succeeded")
	}
	if IsDM(path) || len(Holders(path)) != 0 {
		t.Errorf("IsDM %v, Holders %v of a regular file", IsDM(path), Holders(path))
	}
}

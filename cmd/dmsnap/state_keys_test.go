package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A state file written by a newer dmsnap keeps the keys this version
// does not know, at the top level and in a pool's entry, when this
// version rewrites it; what this version changes is changed.
func TestStatePreservesUnknownKeys(t *testing.T) {
	dir := t.TempDir()
	g := &globalOptions{ConfigDir: dir}
	in := `{
  "version": 1,
  "default_pool": "vg0",
  "pools": {
    "vg0": {"uuid": "00000000000000000000000000000001", "images": ["/img/a"], "future_pool_key": {"x": [1, 2]}},
    "vg1": {"uuid": "00000000000000000000000000000002"}
  },
  "future_top_key": "kept",
  "another": 42
}
`
	if err := os.WriteFile(g.statePath(), []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	err := updateState(context.Background(), g, func(st *state) error {
		st.DefaultPool = "vg1"
		p := st.Pools["vg0"]
		p.Images = append(p.Images, "/img/b")
		st.Pools["vg0"] = p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFileName))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("rewritten state is not JSON: %v\n%s", err, b)
	}
	if got["future_top_key"] != "kept" || got["another"] != float64(42) {
		t.Errorf("top-level unknown keys lost or changed:\n%s", b)
	}
	if got["default_pool"] != "vg1" {
		t.Errorf("default_pool = %v, want vg1", got["default_pool"])
	}
	vg0 := got["pools"].(map[string]any)["vg0"].(map[string]any)
	fk, _ := json.Marshal(vg0["future_pool_key"])
	if string(fk) != `{"x":[1,2]}` {
		t.Errorf("pool-level unknown key = %s, want {\"x\":[1,2]}:\n%s", fk, b)
	}
	if imgs, _ := json.Marshal(vg0["images"]); string(imgs) != `["/img/a","/img/b"]` {
		t.Errorf("images = %s", imgs)
	}
	// Loading the rewritten file again keeps them once more: no key is
	// duplicated, nothing is dropped on a second round trip.
	if err := updateState(context.Background(), g, func(*state) error { return nil }); err != nil {
		t.Fatal(err)
	}
	b2, _ := os.ReadFile(filepath.Join(dir, stateFileName))
	if string(b2) != string(b) {
		t.Errorf("second rewrite changed the file:\n%s\nthen\n%s", b, b2)
	}
	if strings.Count(string(b2), "future_top_key") != 1 {
		t.Errorf("future_top_key duplicated:\n%s", b2)
	}
}

// Without unknown keys the file is exactly what this version always
// wrote.
func TestStateWithoutUnknownKeysUnchanged(t *testing.T) {
	st := state{Version: stateVersion, DefaultPool: "vg0", Pools: map[string]statePool{"vg0": {UUID: "u", Images: []string{"/a"}}}}
	got, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"default_pool":"vg0","pools":{"vg0":{"uuid":"u","images":["/a"]}}}`
	if string(got) != want {
		t.Errorf("marshal = %s, want %s", got, want)
	}
}

package replicate

import "testing"

// TestRecordProperty pins the record property names: they are on users'
// datasets already (sha256 of the target ID, first 8 bytes in hex), so
// they must never change.
func TestRecordProperty(t *testing.T) {
	for _, tc := range []struct{ host, target, want string }{
		{"", "backup/vol", "dmsnap:sent-5546957e8826af18"},
		{"host1", "backup/vol", "dmsnap:sent-d1e6d0fdb1fef509"},
	} {
		id := TargetID(tc.host, tc.target)
		if got := RecordProperty(id); got != tc.want {
			t.Errorf("RecordProperty(%q) = %q, want %q", id, got, tc.want)
		}
	}
}

func TestParseRecord(t *testing.T) {
	r, err := ParseRecord("dmsnap:sent-x", "103 host1:backup/vol")
	if err != nil || r.GUID != 103 || r.Target != "host1:backup/vol" || r.Prop != "dmsnap:sent-x" {
		t.Errorf("ParseRecord: %+v, %v", r, err)
	}
	for _, bad := range []string{"", "103", "0 backup/vol", "x backup/vol", "103 "} {
		if _, err := ParseRecord("p", bad); err == nil {
			t.Errorf("ParseRecord(%q) accepted", bad)
		}
	}
}

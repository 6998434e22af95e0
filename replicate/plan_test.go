package replicate

import (
	"errors"
	"github.com/dmsnap/dmsnap/zfs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	snap1  = "tank/vol@dmsnap-20261122T100000Z-000001"
	snap2  = "tank/vol@dmsnap-20261122T100000Z-000002"
	snap3  = "tank/vol@dmsnap-20261122T110500Z-000003"
	book2  = "tank/vol#dmsnap-20261122T100000Z-000002"
	manual = "tank/vol@manual"
)

func sendStrings(ss []zfs.Send) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.String()
		if s.Force {
			out[i] += " (-F)"
		}
	}
	return out
}

func TestPlanReplication(t *testing.T) {
	sender := mustParseList(t, "tank/vol", "zfs-2.3.2-list-Hp-sender.txt")
	pruned := mustParseList(t, "tank/vol", "zfs-2.3.2-list-Hp-sender-pruned.txt")
	receiver := mustParseList(t, "backup/vol", "zfs-2.3.2-list-Hp-receiver.txt")
	diverged := mustParseList(t, "backup/vol", "zfs-2.3.2-list-Hp-receiver-diverged.txt")
	unrelated := mustParseList(t, "backup/vol", "zfs-2.3.2-list-Hp-receiver-unrelated.txt")
	// Same names as the sender, but only @000001 is really shared: the
	// newer one has a foreign guid (a name collision, not history).
	nameTrap := []zfs.Point{receiver[0], {Name: "backup/vol@dmsnap-20261122T110500Z-000003", Kind: zfs.Snapshot, GUID: 42, CreateTXG: 99}}
	upToDate := append(slices.Clone(receiver), zfs.Point{Name: "backup/vol@dmsnap-20261122T110500Z-000003", Kind: zfs.Snapshot, GUID: 17706119220354061411, CreateTXG: 120})

	for _, tc := range []struct {
		name             string
		req              PlanRequest
		sends            []string
		err              error
		errText          string
		destroy          []string
		first            bool // DestroyFirst
		upToDate, resume bool
	}{
		{name: "incremental -I", req: PlanRequest{SenderPoints: sender, ReceiverPoints: receiver, ReceiverExists: true, IncrementalPackage: true},
			sends: []string{"-I " + snap2 + " " + snap3}},
		{name: "incremental chain of -i (version guard)", req: PlanRequest{SenderPoints: sender, ReceiverPoints: receiver, ReceiverExists: true},
			sends: []string{"-i " + snap2 + " " + manual, "-i " + manual + " " + snap3}},
		{name: "base snapshot pruned on sender: from bookmark", req: PlanRequest{SenderPoints: pruned, ReceiverPoints: receiver, ReceiverExists: true, IncrementalPackage: true},
			sends: []string{"-i " + book2 + " " + manual, "-i " + manual + " " + snap3}},
		{name: "bookmark base straight to target", req: PlanRequest{SenderPoints: append(pruned[:3:3], pruned[4]), ReceiverPoints: receiver, ReceiverExists: true, IncrementalPackage: true},
			sends: []string{"-i " + book2 + " " + snap3}},
		{name: "older common base via bookmark", req: PlanRequest{SenderPoints: append(pruned[:1:1], pruned[4]), ReceiverPoints: receiver, ReceiverExists: true, ForceRollback: true},
			sends: []string{"-i tank/vol#dmsnap-20261122T100000Z-000001 " + snap3 + " (-F)"}, destroy: []string{"backup/vol@dmsnap-20261122T100000Z-000002"}},
		{name: "explicit target", req: PlanRequest{SenderPoints: sender, ReceiverPoints: receiver, ReceiverExists: true, To: "manual", IncrementalPackage: true},
			sends: []string{"-i " + snap2 + " " + manual}},
		{name: "missing target", req: PlanRequest{SenderPoints: sender, ReceiverPoints: receiver, ReceiverExists: true, To: "nope"},
			err: zfs.ErrDatasetNotFound, errText: "tank/vol@nope"},
		{name: "up to date", req: PlanRequest{SenderPoints: sender, ReceiverPoints: upToDate, ReceiverExists: true}, upToDate: true},
		{name: "receiver ahead of explicit target", req: PlanRequest{SenderPoints: sender, ReceiverPoints: receiver, ReceiverExists: true, To: "dmsnap-20261122T100000Z-000001"}, upToDate: true},
		{name: "diverged refused", req: PlanRequest{SenderPoints: sender, ReceiverPoints: diverged, ReceiverExists: true},
			err: zfs.ErrReceiverDiverged, errText: "backup/vol@local-before-upgrade"},
		{name: "diverged with force-rollback", req: PlanRequest{SenderPoints: sender, ReceiverPoints: diverged, ReceiverExists: true, ForceRollback: true, IncrementalPackage: true},
			sends: []string{"-I " + snap2 + " " + snap3 + " (-F)"}, destroy: []string{"backup/vol@local-before-upgrade"}},
		{name: "names are not history", req: PlanRequest{SenderPoints: sender, ReceiverPoints: nameTrap, ReceiverExists: true},
			err: zfs.ErrReceiverDiverged, errText: "backup/vol@dmsnap-20261122T110500Z-000003"},
		{name: "unrelated refused", req: PlanRequest{SenderPoints: sender, ReceiverPoints: unrelated, ReceiverExists: true},
			err: zfs.ErrNoCommonBase, errText: "GUID mismatch"},
		{name: "unrelated, allow-full without force", req: PlanRequest{SenderPoints: sender, ReceiverPoints: unrelated, ReceiverExists: true, AllowFull: true},
			err: zfs.ErrNoCommonBase, errText: "-F"},
		{name: "unrelated, allow-full and force", req: PlanRequest{SenderPoints: sender, ReceiverPoints: unrelated, ReceiverExists: true, AllowFull: true, ForceRollback: true},
			sends: []string{"full " + snap3 + " (-F)"}, destroy: pointNames(unrelated), first: true},
		{name: "exists without snapshots", req: PlanRequest{SenderPoints: sender, ReceiverExists: true},
			err: zfs.ErrNoCommonBase, errText: "no snapshots"},
		{name: "new receiver: full of newest", req: PlanRequest{SenderPoints: sender},
			sends: []string{"full " + snap3}},
		{name: "new receiver: all history", req: PlanRequest{SenderPoints: sender, InitialAll: true, IncrementalPackage: true},
			sends: []string{"full " + snap1, "-I " + snap1 + " " + snap3}},
		{name: "new receiver: all history, -i chain", req: PlanRequest{SenderPoints: sender, InitialAll: true},
			sends: []string{"full " + snap1, "-i " + snap1 + " " + snap2, "-i " + snap2 + " " + manual, "-i " + manual + " " + snap3}},
		{name: "resume token first", req: PlanRequest{SenderPoints: sender, ReceiverPoints: diverged, ReceiverExists: true, ResumeToken: "1-e604ea4bf-e0-789c63a2"},
			sends: []string{"resume 1-e604ea4bf-e0-789c63a2"}, resume: true},
		{name: "dash token is none", req: PlanRequest{SenderPoints: sender, ReceiverPoints: receiver, ReceiverExists: true, ResumeToken: "-", IncrementalPackage: true},
			sends: []string{"-I " + snap2 + " " + snap3}},
		{name: "sender without snapshots", req: PlanRequest{SenderPoints: pruned[:3]}, err: zfs.ErrDatasetNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Sender, tc.req.Receiver = "tank/vol", "backup/vol"
			plan, err := NewPlan(tc.req)
			if tc.err != nil {
				if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("err %v, want %v containing %q", err, tc.err, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := sendStrings(plan.Sends); !slices.Equal(got, tc.sends) {
				t.Errorf("sends\n got %q\nwant %q", got, tc.sends)
			}
			if got := pointNames(plan.Destroys); !slices.Equal(got, tc.destroy) && len(got)+len(tc.destroy) > 0 {
				t.Errorf("destroys %q, want %q", got, tc.destroy)
			}
			if plan.DestroyFirst != tc.first || plan.UpToDate != tc.upToDate || plan.Resume != tc.resume {
				t.Errorf("flags first=%v upToDate=%v resume=%v", plan.DestroyFirst, plan.UpToDate, plan.Resume)
			}
			// Every incremental step's FromGUID is the previous step's
			// ToGUID, and the first starts at the base.
			for i, s := range plan.Sends {
				if !s.Incremental {
					continue
				}
				if i == 0 && s.FromGUID != plan.Base.GUID {
					t.Errorf("first step from guid %d, base %d", s.FromGUID, plan.Base.GUID)
				}
				if i > 0 && s.FromGUID != plan.Sends[i-1].ToGUID {
					t.Errorf("step %d does not continue the chain", i)
				}
				if s.Intermediates && strings.Contains(s.From, "#") {
					t.Errorf("-I from a bookmark: %v", s)
				}
			}
		})
	}
}

// TestPlanBaseIsNewestCommonByGUID: with several shared points, the newest
// receiver snapshot (by createtxg) with a known GUID is the base, even
// when creation times and names would suggest another.
func TestPlanBaseIsNewestCommonByGUID(t *testing.T) {
	sender := mustParseList(t, "tank/vol", "zfs-2.3.2-list-Hp-sender.txt")
	receiver := mustParseList(t, "backup/vol", "zfs-2.3.2-list-Hp-receiver.txt")
	// Rename the receiver's snapshots so that names sort the other way.
	receiver[0].Name = "backup/vol@zzz"
	receiver[1].Name = "backup/vol@aaa"
	plan, err := NewPlan(PlanRequest{Sender: "tank/vol", Receiver: "backup/vol",
		SenderPoints: sender, ReceiverPoints: receiver, ReceiverExists: true})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Base.Name != snap2 || plan.ReceiverBase.Name != "backup/vol@aaa" {
		t.Errorf("base %s / %s", plan.Base.Name, plan.ReceiverBase.Name)
	}
}

// TestPlanRequestNotMutated: planning sorts copies.
func TestPlanRequestNotMutated(t *testing.T) {
	sender := mustParseList(t, "tank/vol", "zfs-2.3.2-list-Hp-sender.txt")
	slices.Reverse(sender)
	before := slices.Clone(sender)
	if _, err := NewPlan(PlanRequest{Sender: "tank/vol", SenderPoints: sender}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sender, before) {
		t.Error("NewPlan reordered the caller's slice")
	}
}

// mustParseList parses a listing captured from real zfs in zfs/testdata.
func mustParseList(t testing.TB, dataset, file string) []zfs.Point {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "zfs", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	pts, err := zfs.ParseList(dataset, b)
	if err != nil {
		t.Fatal(err)
	}
	return pts
}

func pointNames(pts []zfs.Point) []string {
	out := make([]string, len(pts))
	for i, p := range pts {
		out[i] = p.Name
	}
	return out
}

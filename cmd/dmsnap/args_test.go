package main

import (
	"slices"
	"strings"
	"testing"
)

// TestPermuteArgs: flags anywhere go to the command defining them (the
// leaf's own first, then the globals), in every form, and "--" ends them.
func TestPermuteArgs(t *testing.T) {
	app := newApp(&globalOptions{})
	for _, tt := range []struct{ in, want string }{
		{"ls", "ls"},
		{"ls vg0 -o name", "ls -o name vg0"},
		{"ls vg0 -oname", "ls -o name vg0"},
		{"ls vg0 -o=name", "ls -o=name vg0"},
		{"ls vg0 --options name", "ls --options name vg0"},
		{"ls vg0 --options=name", "ls --options=name vg0"},
		{"ls --json", "--json ls"},
		{"ls vg0 --json -q", "--json -q ls vg0"},
		{"ls vg0 -json", "-json ls vg0"},
		{"--json ls vg0", "--json ls vg0"},
		{"lv extend vg0/x -L +4M", "lv extend -L +4M vg0/x"},
		{"lv extend vg0/x -L+4M", "lv extend -L +4M vg0/x"},
		{"lv create vg0/x --size 1G --no-activate", "lv create --size 1G --no-activate vg0/x"},
		{"lv create --size 1G vg0/x -v", "-v lv create --size 1G vg0/x"},
		{"create base snap --cow 20M -c 1M", "create --cow 20M -c 1M base snap"},
		{"create base snap -PL 20M", "create -P -L 20M base snap"},
		{"create base snap -Pq", "-q create -P base snap"},
		{"create base snap --persistent=false", "create --persistent=false base snap"},
		// A bool flag takes no separate value: "snap" stays an argument.
		{"create base --readonly snap", "create --readonly base snap"},
		// A value flag takes the next word, even one that starts with '-'.
		{"cow inspect x.img --limit -1", "cow inspect --limit -1 x.img"},
		{"cow inspect x.img --json", "--json cow inspect x.img"},
		{"--json cow inspect x.img", "--json cow inspect x.img"},
		{"diff x.img --bitmap out.bin --origin-size 64M", "diff --bitmap out.bin --origin-size 64M x.img"},
		{"zfs ls -- -tank", "zfs ls -- -tank"},
		{"zfs ls -n -- -tank --keep 1", "zfs ls -n -- -tank --keep 1"},
		{"zfs prune tank/x --keep 2 -n", "zfs prune --keep 2 -n tank/x"},
		{"pool create -- -x a.img", "pool create -- -x a.img"},
		{"pool create vg a.img -- --default", "pool create -- vg a.img --default"},
		// Unknown flags stay with the command they were given to, which
		// reports them.
		{"ls vg0 --bogus", "ls --bogus vg0"},
		{"ls vg0 -Z", "ls -Z vg0"},
		{"ls vg0 -qZ", "ls -qZ vg0"},
		// A value flag at the end with no value ends the result, so that
		// it takes no argument as its value and its parser reports it.
		{"ls vg0 -o", "ls -o"},
		{"create base snap --cow", "create --cow"},
		{"create base snap -Pc", "create -P -c"},
		{"ls vg0 -q --config-dir", "-q --config-dir"},
		{"ls vg0 --config-dir -- x", "--config-dir -- ls vg0 x"},
		// Every command has --help: the nearest command's is found first.
		// Arguments go: with them urfave/cli would look for a help topic.
		{"lv ls vg0 --help", "lv ls --help"},
		{"lv create vg/x -h", "lv create -h"},
		{"create base snap -Ph", "create -P -h"},
		{"lv ls vg0 --help=false", "lv ls --help=false vg0"},
		{"lv -h", "lv -h"},
		{"-h lv", "-h lv"},
		{"bogus --json", "--json bogus"},
		{"lv bogus -q", "-q lv bogus"},
		{"help lv", "help lv"},
		// After the first argument, a command's name is an argument.
		{"lv ls create", "lv ls create"},
		{"--config-dir /c ls --lock-dir /l vg0", "--config-dir /c --lock-dir /l ls vg0"},
		{"ls vg0 --config-dir=/c", "--config-dir=/c ls vg0"},
		{"merge vg/s --watch --interval 1s -b", "merge --watch --interval 1s -b vg/s"},
		{"ls -", "ls -"},
		// A flag given before its command's name goes to that command.
		{"lv --size 1G create vg/x", "lv create --size 1G vg/x"},
		{"--size 1G lv create vg/x", "lv create --size 1G vg/x"},
		{"-L 1G lv extend vg/x", "lv extend -L 1G vg/x"},
		{"-qL1G lv create vg/x", "-q lv create -L 1G vg/x"},
		{"--interval 1s merge vg/s", "merge --interval 1s vg/s"},
		{"--force pool remove vg", "pool remove --force vg"},
		// ... if that command defines it; else the command it was given
		// to reports it.
		{"--size 1G ls vg", "--size 1G ls vg"},
		{"lv -n ls", "lv -n ls"},
		{"--size", "--size"},
	} {
		got := permuteArgs(app, append([]string{"dmsnap"}, strings.Fields(tt.in)...))
		want := append([]string{"dmsnap"}, strings.Fields(tt.want)...)
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", tt.in, got[1:], want[1:])
		}
	}
}

// TestDedupeTail: a wrapped sentinel that repeats what the message says
// is dropped; one that adds to it is kept.
func TestDedupeTail(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"pool vg already exists (uuid 1234): already exists", "pool vg already exists (uuid 1234)"},
		{"volume vg/x: already exists", "volume vg/x: already exists"},
		{"snapshot vg/s: not found", "snapshot vg/s: not found"},
		{`--size: size "0": must be greater than zero: invalid size`, `--size: size "0": must be greater than zero: invalid size`},
		{"a: b is in use: in use", "a: b is in use"},
		{"no colon", "no colon"},
	} {
		if got := dedupeTail(tt.in); got != tt.want {
			t.Errorf("dedupeTail(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

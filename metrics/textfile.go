package metrics

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// TextfileName is the file dmsnap writes in a textfile directory;
// node_exporter's textfile collector reads every *.prom file there.
const TextfileName = "dmsnap.prom"

// CheckTextfileDir checks that dir is a directory in which a file can be
// created, written and renamed, by doing so with a scratch file. Call it
// at startup, so that a bad --textfile fails before anything runs.
func CheckTextfileDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("textfile directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("textfile directory %s: not a directory", dir)
	}
	f, err := os.CreateTemp(dir, "."+TextfileName+".check*")
	if err != nil {
		return fmt.Errorf("textfile directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	_, err = f.WriteString("# dmsnap write check\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, name+".renamed")
		name += ".renamed"
	}
	if rerr := os.Remove(name); err == nil && rerr != nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("textfile directory %s: %w", dir, err)
	}
	return nil
}

// WriteTextfile gathers g and writes it in the Prometheus text format to
// dir/[TextfileName] atomically: it writes a hidden temporary file in dir
// (node_exporter reads *.prom only), syncs it and renames it over the old
// file, so a reader sees the old content or the new, never a mix.
func WriteTextfile(dir string, g prometheus.Gatherer) (err error) {
	mfs, err := g.Gather()
	if err != nil {
		return fmt.Errorf("textfile: gather: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+TextfileName+".tmp*")
	if err != nil {
		return fmt.Errorf("textfile: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.Remove(f.Name()))
		}
	}()
	enc := expfmt.NewEncoder(f, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err = enc.Encode(mf); err != nil {
			f.Close()
			return fmt.Errorf("textfile: encode: %w", err)
		}
	}
	if err = f.Chmod(0o644); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, TextfileName))
	}
	if err != nil {
		return fmt.Errorf("textfile: %w", err)
	}
	return nil
}

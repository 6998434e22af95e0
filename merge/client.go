package merge

import (
	"context"

	"github.com/dmsnap/dmsnap/dm"
)

// Client is the part of [*dm.Client] this package uses. Tests substitute a
// fake that records the calls.
type Client interface {
	List() ([]dm.ListEntry, error)
	Info(name string) (dm.Info, error)
	Table(name string, opts dm.TableOptions) ([]dm.TargetLine, dm.Info, error)
	Status(name string) ([]dm.TargetLine, dm.Info, error)
	Load(name string, lines []dm.TargetLine, opts dm.LoadOptions) error
	ClearInactive(name string) error
	Suspend(name string, opts dm.SuspendOptions) error
	Resume(name string) (dm.Info, error)
	Remove(name string, opts dm.RemoveOptions) error
	WithSuspended(ctx context.Context, name string, opts dm.SuspendOptions, fn func() error) error
}

var _ Client = (*dm.Client)(nil)

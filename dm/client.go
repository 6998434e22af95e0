package dm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/dmsnap/dmsnap/internal/sys"
)

// Version is a device-mapper version triple: the ioctl interface version
// or a target type's version.
type Version struct {
	Major, Minor, Patch uint32
}

// String formats v as "major.minor.patch".
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v >= o.
func (v Version) AtLeast(o Version) bool {
	if v.Major != o.Major {
		return v.Major > o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor > o.Minor
	}
	return v.Patch >= o.Patch
}

func (v Version) triple() [3]uint32 { return [3]uint32{v.Major, v.Minor, v.Patch} }

// Minimum interface versions of the commands, as libdm sends them
// (libdm/ioctl/libdm-iface.c _cmd_data_v4). The kernel rejects a request
// whose minor is newer than its own, so each command sends the oldest
// version that has it, never golang.org/x/sys/unix.DM_VERSION_MINOR.
var (
	v4_0  = Version{4, 0, 0}
	v4_2  = Version{4, 2, 0}  // DM_TARGET_MSG
	v4_19 = Version{4, 19, 0} // DM_DEV_RENAME with DM_UUID_FLAG (set uuid)
	v4_27 = Version{4, 27, 0} // DM_DEFERRED_REMOVE
	v4_36 = Version{4, 36, 0} // DM_DEV_ARM_POLL
	v4_37 = Version{4, 37, 0} // event_nr in DM_LIST_DEVICES records
	v4_41 = Version{4, 41, 0} // DM_GET_TARGET_VERSION
)

// udevCookie is the dm_ioctl.event_nr of resume, remove and rename: the
// DM_UDEV_PRIMARY_SOURCE_FLAG in the flag half and semaphore base 0 (no
// udev synchronisation). 10-dm.rules only acts on primary-source events.
const udevCookie = sys.DM_UDEV_PRIMARY_SOURCE_FLAG << sys.DM_UDEV_FLAGS_SHIFT

// Client issues device-mapper ioctls on one open /dev/mapper/control. It
// is safe for concurrent use. Close it when done.
type Client struct {
	ctl     *sys.Control
	version Version
}

// Open opens /dev/mapper/control and negotiates the interface version:
// DM_VERSION with 4.0.0 returns the kernel's version, which [Client.Version]
// then reports.
//
// Errors: [ErrNoDeviceMapper] when the control node is missing,
// [ErrPermission] without CAP_SYS_ADMIN, [ErrNotSupported] on an OS
// without device-mapper or a kernel interface other than 4.x; see also
// [Unavailable].
func Open() (*Client, error) {
	ctl, err := sys.OpenControl()
	if err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			return nil, &OpError{Op: "open", Device: sys.ControlPath, Err: err}
		}
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = os.NewSyscallError("open", pe.Err)
		}
		return nil, &OpError{Op: "open", Device: sys.ControlPath, Err: err}
	}
	r, err := ctl.Do(&sys.DMRequest{Cmd: sys.DM_VERSION_CMD, Version: v4_0.triple()})
	if err != nil {
		return nil, errors.Join(opErr("version", "", err), ctl.Close())
	}
	v := Version{r.Version[0], r.Version[1], r.Version[2]}
	if v.Major != 4 {
		return nil, errors.Join(&OpError{Op: "version", Err: &UnsupportedFeatureError{
			Name: "dm ioctl interface " + v.String(), MinKernel: "dm ioctl 4.x"}}, ctl.Close())
	}
	return &Client{ctl: ctl, version: v}, nil
}

// Close closes the control descriptor. It is idempotent.
func (c *Client) Close() error { return c.ctl.Close() }

// Version returns the kernel's ioctl interface version, e.g. 4.47.0 on
// Linux 6.1.
func (c *Client) Version() Version { return c.version }

// do runs one command against a device and wraps a failure as *OpError.
func (c *Client) do(op, name string, req *sys.DMRequest) (*sys.DMReply, error) {
	if req.Version == ([3]uint32{}) {
		req.Version = v4_0.triple()
	}
	r, err := c.ctl.Do(req)
	if err != nil {
		return nil, opErr(op, name, err)
	}
	return r, nil
}

// Info is the state of a device as DM_DEV_STATUS reports it. Every DM
// reply carries it.
type Info struct {
	Name      string
	UUID      string
	Dev       DevNum
	OpenCount int32
	// EventNr counts table events (snapshot invalidation, rename, ...);
	// see [Client.Wait].
	EventNr uint32
	// Suspended is the device's suspend state.
	Suspended bool
	// ReadOnly reports a read-only live table (or inactive table when
	// queried with TableOptions.Inactive).
	ReadOnly bool
	// ActivePresent and InactivePresent report the two table slots.
	ActivePresent   bool
	InactivePresent bool
	// DeferredRemove is set while a deferred remove waits for the last
	// close.
	DeferredRemove bool
	// InternalSuspend is set while dm-snapshot suspends the device
	// internally.
	InternalSuspend bool
	// TargetCount is the number of targets of the table that was queried
	// (the live table unless the inactive one was asked for).
	TargetCount uint32
}

// BlockPath returns the kernel-named device node, /dev/dm-<minor>.
// devtmpfs creates it as soon as the device has a table, with or without
// udev.
func (i Info) BlockPath() string { return fmt.Sprintf("/dev/dm-%d", i.Dev.Minor) }

func decodeDev(dev uint64) DevNum {
	major, minor := sys.HugeDecodeDev(dev)
	return DevNum{Major: major, Minor: minor}
}

func infoFrom(r *sys.DMReply) Info {
	f := r.Flags
	return Info{
		Name:            r.Name,
		UUID:            r.UUID,
		Dev:             decodeDev(r.Dev),
		OpenCount:       r.OpenCount,
		EventNr:         r.EventNr,
		Suspended:       f&sys.DM_SUSPEND_FLAG != 0,
		ReadOnly:        f&sys.DM_READONLY_FLAG != 0,
		ActivePresent:   f&sys.DM_ACTIVE_PRESENT_FLAG != 0,
		InactivePresent: f&sys.DM_INACTIVE_PRESENT_FLAG != 0,
		DeferredRemove:  f&sys.DM_DEFERRED_REMOVE != 0,
		InternalSuspend: f&sys.DM_INTERNAL_SUSPEND_FLAG != 0,
		TargetCount:     r.TargetCount,
	}
}

// ListEntry is one device of [Client.List].
type ListEntry struct {
	Name    string
	Dev     DevNum
	EventNr uint32
	UUID    string
}

// List returns every device-mapper device. It asks for uuids with
// DM_UUID_FLAG (interface 4.45+); on kernels that do not return the uuid
// or the event number in the list, it fills them in with DM_DEV_STATUS
// per device, skipping devices removed meanwhile.
func (c *Client) List() ([]ListEntry, error) {
	r, err := c.do("list", "", &sys.DMRequest{Cmd: sys.DM_LIST_DEVICES_CMD, Flags: sys.DM_UUID_FLAG})
	if err != nil {
		return nil, err
	}
	recs, err := sys.DecodeNameList(r.Data, c.version.AtLeast(v4_37))
	if err != nil {
		return nil, &OpError{Op: "list", Err: err}
	}
	out := make([]ListEntry, 0, len(recs))
	for _, rec := range recs {
		e := ListEntry{Name: rec.Name, Dev: decodeDev(rec.Dev), EventNr: rec.EventNr, UUID: rec.UUID}
		if !rec.HasEventNr || rec.UUIDFlags == 0 {
			info, err := c.Info(rec.Name)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			e.EventNr, e.UUID = info.EventNr, info.UUID
		}
		out = append(out, e)
	}
	return out, nil
}

// Create creates a device with the given name and optional uuid. The
// kernel creates it with neither table slot filled, so it maps nothing
// until [Client.Load] and [Client.Resume]. (DM_DEV_STATUS reports such a
// device as not suspended on 6.1 and 6.12, verified in the kernel tests.)
//
// Errors: [ErrExist] if the name or uuid is taken (the kernel's errno is
// EBUSY).
func (c *Client) Create(name, uuid string) (Info, error) {
	r, err := c.do("create", name, &sys.DMRequest{Cmd: sys.DM_DEV_CREATE_CMD, Name: name, UUID: uuid})
	if err != nil {
		return Info{}, err
	}
	return infoFrom(r), nil
}

// LoadOptions modify [Client.Load].
type LoadOptions struct {
	// ReadOnly loads a read-only table.
	ReadOnly bool
}

// Load loads lines into the device's inactive table slot. The target
// constructors run now (a snapshot reads its exception store here); the
// table takes effect at the next resume.
func (c *Client) Load(name string, lines []TargetLine, opts LoadOptions) error {
	specs := make([]sys.TargetSpec, len(lines))
	for i, l := range lines {
		specs[i] = sys.TargetSpec{Start: uint64(l.Start), Length: uint64(l.Length), Type: l.Type, Params: l.Params}
	}
	payload, err := sys.EncodeTargetSpecs(specs)
	if err != nil {
		return &OpError{Op: "load", Device: name, Err: err}
	}
	var flags uint32
	if opts.ReadOnly {
		flags |= sys.DM_READONLY_FLAG
	}
	_, err = c.do("load", name, &sys.DMRequest{
		Cmd: sys.DM_TABLE_LOAD_CMD, Name: name, Flags: flags,
		TargetCount: uint32(len(lines)), Payload: payload,
	})
	return err
}

// ClearInactive discards the device's inactive table, if any.
func (c *Client) ClearInactive(name string) error {
	_, err := c.do("clear", name, &sys.DMRequest{Cmd: sys.DM_TABLE_CLEAR_CMD, Name: name})
	return err
}

// SuspendOptions modify [Client.Suspend].
type SuspendOptions struct {
	// NoFlush keeps in-flight I/O queued instead of flushing it.
	NoFlush bool
	// NoLockFS skips freezing a filesystem mounted on the device.
	NoLockFS bool
}

func (o SuspendOptions) flags() uint32 {
	var f uint32
	if o.NoFlush {
		f |= sys.DM_NOFLUSH_FLAG
	}
	if o.NoLockFS {
		f |= sys.DM_SKIP_LOCKFS_FLAG
	}
	return f
}

// Suspend suspends the device: new I/O queues until resume. Prefer
// [Client.WithSuspended], which cannot forget the resume.
func (c *Client) Suspend(name string, opts SuspendOptions) error {
	_, err := c.do("suspend", name, &sys.DMRequest{
		Cmd: sys.DM_DEV_SUSPEND_CMD, Name: name, Flags: sys.DM_SUSPEND_FLAG | opts.flags(),
	})
	return err
}

// Resume resumes the device. If an inactive table is loaded, the kernel
// first suspends the device (if needed), swaps the tables, then resumes.
// The udev primary-source cookie is set. Without udev (no
// /run/udev/control), Resume also creates /dev/mapper/<name> as a block
// node (see [EnsureNode]); a failure to do so is returned after the
// device was resumed.
func (c *Client) Resume(name string) (Info, error) {
	r, err := c.do("resume", name, &sys.DMRequest{
		Cmd: sys.DM_DEV_SUSPEND_CMD, Name: name, EventNr: udevCookie,
	})
	if err != nil {
		return Info{}, err
	}
	info := infoFrom(r)
	if !UdevRunning() && info.ActivePresent {
		if err := mknodMapper(info.Name, info.Dev); err != nil {
			return info, &OpError{Op: "resume", Device: name, Err: err}
		}
	}
	return info, nil
}

// RemoveOptions modify [Client.Remove].
type RemoveOptions struct {
	// Deferred removes the device at its last close instead of failing
	// with ErrBusy while it is open (interface 4.27+).
	Deferred bool
	// NoRetry fails at the first EBUSY instead of retrying for about 2 s
	// (see busyRetry): for callers that already know the device is held.
	NoRetry bool
}

// Remove removes the device and its tables. Without udev it also removes
// the /dev/mapper/<name> node Resume created.
//
// EBUSY is retried with backoff for about 2 s (unless NoRetry), as LVM2
// does, because udev's blkid opens a device briefly after each change.
//
// Errors: [ErrBusy] while the device stays open (and not Deferred),
// [ErrNotFound] if there is no such device.
func (c *Client) Remove(name string, opts RemoveOptions) error {
	var r *sys.DMReply
	try := func() error {
		// A fresh request each time: the kernel writes its reply there.
		req := &sys.DMRequest{Cmd: sys.DM_DEV_REMOVE_CMD, Name: name, EventNr: udevCookie}
		if opts.Deferred {
			req.Flags |= sys.DM_DEFERRED_REMOVE
			req.Version = v4_27.triple()
		}
		var err error
		r, err = c.do("remove", name, req)
		return err
	}
	policy := removeRetry
	if opts.NoRetry || opts.Deferred {
		policy.Tries = 1
	}
	if err := policy.do(time.Sleep, try); err != nil {
		return err
	}
	if r.Flags&sys.DM_DEFERRED_REMOVE != 0 {
		return nil // still present until the last close
	}
	if !UdevRunning() {
		if err := removeMapperNode(name); err != nil {
			return &OpError{Op: "remove", Device: name, Err: err}
		}
	}
	return nil
}

// RemoveIfExists is Remove that treats a missing device as success.
func (c *Client) RemoveIfExists(name string, opts RemoveOptions) error {
	err := c.Remove(name, opts)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Rename renames a device. Without udev, the /dev/mapper node follows.
//
// Errors: [ErrExist] if newName is taken (errno EBUSY), [ErrNotFound].
func (c *Client) Rename(oldName, newName string) error {
	r, err := c.do("rename", oldName, &sys.DMRequest{
		Cmd: sys.DM_DEV_RENAME_CMD, Name: oldName, EventNr: udevCookie,
		Payload: sys.EncodeString(newName),
	})
	if err != nil {
		return err
	}
	if UdevRunning() {
		return nil
	}
	err = removeMapperNode(oldName)
	if err == nil && r.Flags&sys.DM_ACTIVE_PRESENT_FLAG != 0 {
		err = mknodMapper(newName, decodeDev(r.Dev))
	}
	if err != nil {
		return &OpError{Op: "rename", Device: oldName, Err: err}
	}
	return nil
}

// SetUUID gives a device that has none a uuid (DM_DEV_RENAME with
// DM_UUID_FLAG, interface 4.19+). The kernel refuses to change an
// existing uuid (EINVAL).
func (c *Client) SetUUID(name, uuid string) error {
	_, err := c.do("set-uuid", name, &sys.DMRequest{
		Cmd: sys.DM_DEV_RENAME_CMD, Version: v4_19.triple(), Name: name,
		Flags: sys.DM_UUID_FLAG, EventNr: udevCookie, Payload: sys.EncodeString(uuid),
	})
	return err
}

// Info returns the device's state (DM_DEV_STATUS).
//
// Errors: [ErrNotFound].
func (c *Client) Info(name string) (Info, error) {
	r, err := c.do("info", name, &sys.DMRequest{Cmd: sys.DM_DEV_STATUS_CMD, Name: name})
	if err != nil {
		return Info{}, err
	}
	return infoFrom(r), nil
}

// TableOptions modify [Client.Table].
type TableOptions struct {
	// Inactive reads the inactive (loaded, not yet resumed) table.
	Inactive bool
}

// Table returns the device's table as the kernel prints it (dmsetup
// table), with devices as major:minor.
func (c *Client) Table(name string, opts TableOptions) ([]TargetLine, Info, error) {
	flags := uint32(sys.DM_STATUS_TABLE_FLAG)
	if opts.Inactive {
		flags |= sys.DM_QUERY_INACTIVE_TABLE_FLAG
	}
	return c.tableStatus("table", name, flags)
}

// Status returns each target's status line (dmsetup status), e.g.
// "16/32768 16" for a fresh persistent snapshot.
func (c *Client) Status(name string) ([]TargetLine, Info, error) {
	return c.tableStatus("status", name, 0)
}

func (c *Client) tableStatus(op, name string, flags uint32) ([]TargetLine, Info, error) {
	r, err := c.do(op, name, &sys.DMRequest{Cmd: sys.DM_TABLE_STATUS_CMD, Name: name, Flags: flags})
	if err != nil {
		return nil, Info{}, err
	}
	lines, err := decodeLines(r)
	if err != nil {
		return nil, Info{}, &OpError{Op: op, Device: name, Err: err}
	}
	return lines, infoFrom(r), nil
}

func decodeLines(r *sys.DMReply) ([]TargetLine, error) {
	specs, err := sys.DecodeTargetSpecs(r.Data, r.TargetCount)
	if err != nil {
		return nil, err
	}
	lines := make([]TargetLine, len(specs))
	for i, s := range specs {
		lines[i] = TargetLine{Start: Sector(s.Start), Length: Sector(s.Length), Type: s.Type, Params: s.Params}
	}
	return lines, nil
}

// Message sends msg to the target covering sector and returns its reply
// (empty for most messages). Messages starting with '@' go to DM core
// (e.g. "@cancel_deferred_remove"). Snapshot targets take no messages and
// fail with EINVAL. Should the reply not fit the buffer, the message is
// sent again with a larger one, as libdm does; do not send non-idempotent
// messages that produce large replies.
func (c *Client) Message(name string, sector Sector, msg string) (string, error) {
	payload, err := sys.EncodeTargetMsg(uint64(sector), msg)
	if err != nil {
		return "", &OpError{Op: "message", Device: name, Err: err}
	}
	r, err := c.do("message", name, &sys.DMRequest{
		Cmd: sys.DM_TARGET_MSG_CMD, Version: v4_2.triple(), Name: name, Payload: payload,
	})
	if err != nil {
		return "", err
	}
	if r.Flags&sys.DM_DATA_OUT_FLAG == 0 {
		return "", nil
	}
	return sys.DecodeString(r.Data), nil
}

// Deps returns the devices the live table uses, as major:minor.
func (c *Client) Deps(name string) ([]DevNum, error) {
	r, err := c.do("deps", name, &sys.DMRequest{Cmd: sys.DM_TABLE_DEPS_CMD, Name: name})
	if err != nil {
		return nil, err
	}
	devs, err := sys.DecodeDeps(r.Data)
	if err != nil {
		return nil, &OpError{Op: "deps", Device: name, Err: err}
	}
	out := make([]DevNum, len(devs))
	for i, d := range devs {
		out[i] = decodeDev(d)
	}
	return out, nil
}

// TargetVersion is a registered target type and its version.
type TargetVersion struct {
	Name    string
	Version Version
}

func targetVersions(data []byte) ([]TargetVersion, error) {
	vs, err := sys.DecodeVersions(data)
	if err != nil {
		return nil, err
	}
	out := make([]TargetVersion, len(vs))
	for i, v := range vs {
		out[i] = TargetVersion{Name: v.Name, Version: Version{v.Version[0], v.Version[1], v.Version[2]}}
	}
	return out, nil
}

// TargetVersions lists the target types the kernel has loaded
// (DM_LIST_VERSIONS). Types of modules not loaded yet are absent.
func (c *Client) TargetVersions() ([]TargetVersion, error) {
	r, err := c.do("versions", "", &sys.DMRequest{Cmd: sys.DM_LIST_VERSIONS_CMD})
	if err != nil {
		return nil, err
	}
	vs, err := targetVersions(r.Data)
	if err != nil {
		return nil, &OpError{Op: "versions", Err: err}
	}
	return vs, nil
}

// TargetVersion returns the version of one target type
// (DM_GET_TARGET_VERSION, interface 4.41+; the kernel tries to load the
// module first).
//
// Errors: [ErrNotFound] for an unknown type (the kernel answers EINVAL),
// an [*UnsupportedFeatureError] on interfaces before 4.41.
func (c *Client) TargetVersion(name string) (TargetVersion, error) {
	if !c.version.AtLeast(v4_41) {
		return TargetVersion{}, &OpError{Op: "target-version", Device: name, Err: &UnsupportedFeatureError{
			Name: "DM_GET_TARGET_VERSION", MinKernel: "dm ioctl " + v4_41.String()}}
	}
	r, err := c.do("target-version", name, &sys.DMRequest{
		Cmd: sys.DM_GET_TARGET_VERSION_CMD, Version: v4_41.triple(), Name: name,
	})
	if errors.Is(err, sys.EINVAL) {
		return TargetVersion{}, &OpError{Op: "target-version", Device: name, Err: ErrNotFound}
	}
	if err != nil {
		return TargetVersion{}, err
	}
	vs, err := targetVersions(r.Data)
	if err != nil || len(vs) != 1 {
		return TargetVersion{}, &OpError{Op: "target-version", Device: name, Err: errors.Join(err, sys.ErrMalformed)}
	}
	return vs[0], nil
}

// CreateAndLoad creates a device, loads lines and resumes it. If Load or
// Resume fails, the device is removed again and both errors are returned
// (errors.Join).
func (c *Client) CreateAndLoad(name, uuid string, lines []TargetLine, opts LoadOptions) (Info, error) {
	if _, err := c.Create(name, uuid); err != nil {
		return Info{}, err
	}
	err := c.Load(name, lines, opts)
	var info Info
	if err == nil {
		info, err = c.Resume(name)
		if err != nil && info.ActivePresent {
			return info, err // resumed; only the /dev/mapper node failed
		}
	}
	if err != nil {
		return Info{}, errors.Join(err, c.Remove(name, RemoveOptions{}))
	}
	return info, nil
}

// waitPollInterval bounds how long Wait takes to notice ctx cancellation.
const waitPollInterval = 100 * time.Millisecond

// Wait blocks until the device's event counter differs from eventNr and
// returns the new Info. Events are table events: a snapshot being
// invalidated, a rename, a remove. Merge progress and PO overflow raise
// no event; poll [Client.Status] for those.
//
// A DM_DEV_WAIT ioctl cannot be interrupted, so Wait does not use it: it
// opens a second control descriptor, arms it with DM_DEV_ARM_POLL
// (interface 4.36+), re-checks the counter, and poll(2)s that descriptor
// in steps of 100 ms, checking ctx between steps. Cancellation therefore
// returns ctx.Err() within about 100 ms and leaves nothing blocked in the
// kernel. On older interfaces it polls DM_DEV_STATUS every 100 ms.
//
// The race-free pattern is: read Info (or Status), check the condition,
// then Wait(ctx, name, info.EventNr).
func (c *Client) Wait(ctx context.Context, name string, eventNr uint32) (Info, error) {
	var pc *sys.Control
	if c.version.AtLeast(v4_36) {
		var err error
		if pc, err = sys.OpenControl(); err != nil {
			return Info{}, &OpError{Op: "wait", Device: name, Err: err}
		}
		defer pc.Close()
	}
	for {
		if pc != nil {
			if _, err := pc.Do(&sys.DMRequest{Cmd: sys.DM_DEV_ARM_POLL_CMD, Version: v4_36.triple()}); err != nil {
				return Info{}, opErr("wait", name, err)
			}
		}
		info, err := c.Info(name)
		if err != nil {
			return Info{}, err
		}
		if info.EventNr != eventNr {
			return info, nil
		}
		for {
			if err := ctx.Err(); err != nil {
				return Info{}, err
			}
			if pc == nil {
				time.Sleep(waitPollInterval)
				break
			}
			ev, err := pc.WaitEvent(waitPollInterval)
			if err != nil {
				return Info{}, opErr("wait", name, err)
			}
			if ev {
				break
			}
		}
	}
}

package dm

import (
	"sync"

	"github.com/dmsnap/dmsnap/internal/sys"
)

// memlock counts the open suspend windows of the process.
var memlock struct {
	sync.Mutex
	n      int
	locked bool
}

// LockMemory locks the process's memory (mlockall with MCL_CURRENT and
// MCL_FUTURE) for a suspend window and returns the function that ends
// the window. Windows nest; the memory is unlocked (munlockall) when the
// outermost ends. Why: a page fault that has to read from swap or from
// a file on a suspended device blocks until that device resumes, which
// the faulting process itself would have done; LVM2 locks its memory
// around suspends for the same reason (lib/mm/memlock.c).
//
// A failure (no CAP_IPC_LOCK, RLIMIT_MEMLOCK too small) is returned, but
// unlock is valid anyway: callers go on without the lock, as LVM2 does
// after a warning.
func LockMemory() (unlock func(), err error) {
	memlock.Lock()
	defer memlock.Unlock()
	memlock.n++
	if memlock.n == 1 {
		err = sys.Mlockall()
		memlock.locked = err == nil
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			memlock.Lock()
			defer memlock.Unlock()
			if memlock.n--; memlock.n == 0 && memlock.locked {
				_ = sys.Munlockall() // cannot fail for a process that locked
				memlock.locked = false
			}
		})
	}, err
}

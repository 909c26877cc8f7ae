package registry

import (
	"errors"
	"os"
	"syscall"
)

// directAlign is the alignment of offsets and lengths written with O_DIRECT (a page covers every block size).
const directAlign = 4096

// openDirect opens path for writing with O_DIRECT, or returns nil where that is not possible (tmpfs, for one).
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}

func isInvalid(err error) bool { return errors.Is(err, syscall.EINVAL) }

// startWriteback asks the kernel to start writing the file's range to disk without waiting (sync_file_range
// with SYNC_FILE_RANGE_WRITE). It is a hint: durability still comes from the fsync before commit, which then
// has little left to write. Errors are ignored for the same reason.
func startWriteback(f *os.File, off, n int64) {
	const syncFileRangeWrite = 2
	syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, f.Fd(), uintptr(off), uintptr(n), syncFileRangeWrite, 0, 0)
}

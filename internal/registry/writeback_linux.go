package registry

import (
	"os"
	"syscall"
)

// startWriteback asks the kernel to start writing the file's range to disk without waiting (sync_file_range
// with SYNC_FILE_RANGE_WRITE). It is a hint: durability still comes from the fsync before commit, which then
// has little left to write. Errors are ignored for the same reason.
func startWriteback(f *os.File, off, n int64) {
	const syncFileRangeWrite = 2
	syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, f.Fd(), uintptr(off), uintptr(n), syncFileRangeWrite, 0, 0)
}

package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Disk is a task's own file system, of a fixed size, mounted at Dir: the task's writable paths (/workspace, /tmp,
// /outputs) are directories in it, so together they can hold at most Limit bytes, and a full disk fails the
// task's writes with ENOSPC instead of filling the host. It is an ext4 file system without a journal in a
// sparse file, loop-mounted: the host disk holds only what the task wrote (plus ext4's metadata), and the kernel,
// not a poll, enforces the bound.
type Disk struct {
	Dir   string
	Limit int64
	// Hold are lock files of the task's host-wide leases (its task slot, its build's uid). Each step's runtime
	// process inherits them (the step itself does not): when the control plane is killed outright, its steps
	// run on until they end, and the leases stay held as long as they do, so no other task takes the slot or
	// the uid meanwhile.
	Hold  []*os.File
	image string
}

// ReservedDisk is the part of a Disk that only root may fill (at most an eighth of the disk): room for the
// files the runtime writes beside a task's steps. A task's writable paths hold at most Limit minus this.
const ReservedDisk = 1 << 20

// MountDisk creates a file system of limit bytes in image (a new file beside dir, on the host's TMPDIR) and mounts
// it on dir, which must exist and be empty. The caller must Close the disk.
func MountDisk(ctx context.Context, dir, image string, limit int64) (*Disk, error) {
	const minDisk = 1 << 20
	if limit < minDisk {
		return nil, fmt.Errorf("disk limit %d bytes is below the minimum of %d bytes", limit, minDisk)
	}
	f, err := os.OpenFile(image, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating task disk image: %w", err)
	}
	err = f.Truncate(limit)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	d := &Disk{Dir: dir, Limit: limit, image: image}
	if err != nil {
		os.Remove(image)
		return nil, fmt.Errorf("sizing task disk image %s: %w", image, err)
	}
	// No journal, no backup superblocks and lazy inode-table initialisation keep mkfs to a few milliseconds
	// whatever the size (the file system lives for one task; a crash loses it anyway); one inode per 16 KiB, as
	// for ext4's default type. The root directory belongs to root (0755), so a task can write only into the
	// directories the factory creates and chowns for it.
	//
	// ReservedDisk bytes are reserved for root, which steps never are: the runtime's bundle (each step's
	// config.json and the runtime's log) lives on this disk too, and a step that filled it to the last block
	// would otherwise make the control plane's write of the next step's config fail.
	reserved := strconv.FormatFloat(float64(min(ReservedDisk, limit/8))*100/float64(limit), 'f', -1, 64)
	mkfs := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", reserved, "-i", "16384",
		"-O", "^has_journal,^resize_inode,sparse_super2", "-E", "lazy_itable_init=1,nodiscard,num_backup_sb=0", image)
	if out, err := mkfs.CombinedOutput(); err != nil {
		os.Remove(image)
		return nil, fmt.Errorf("making the task's file system (mkfs.ext4, from e2fsprogs): %w: %s", err, strings.TrimSpace(string(out)))
	}
	// mount(8) sets up the loop device with autoclear, so unmounting also releases the loop device.
	mnt := exec.CommandContext(ctx, "mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noatime", image, dir)
	if out, err := mnt.CombinedOutput(); err != nil {
		os.Remove(image)
		return nil, fmt.Errorf("mounting the task's file system on %s: %w: %s", dir, err, strings.TrimSpace(string(out)))
	}
	if err := os.Remove(filepath.Join(dir, "lost+found")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Full reports whether the disk has (almost) no room left: no free inodes, or less free space than ext4 may refuse
// a large write with (it reserves room for the metadata of a whole write before taking it, so a 1 MiB write fails
// with hundreds of KiB still free): 0.5% of the disk, at least 1 MiB and at most an eighth of it.
func (d *Disk) Full() bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.Dir, &st); err != nil {
		return false
	}
	free := int64(st.Bavail) * st.Bsize
	return st.Ffree == 0 || free < min(d.Limit/8, max(1<<20, d.Limit/200))
}

// Close unmounts the disk and removes its image. It is safe to call more than once.
func (d *Disk) Close() error {
	if d.image == "" {
		return nil
	}
	if err := unmount(d.Dir); err != nil {
		return err
	}
	err := os.Remove(d.image)
	d.image = ""
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func unmount(dir string) error {
	err := syscall.Unmount(dir, 0)
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, fs.ErrNotExist) {
		return nil // not mounted (any more)
	}
	if errors.Is(err, syscall.EBUSY) {
		// Something still has a file open; detach now, the kernel frees the loop device when it is closed.
		err = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
	if err != nil {
		return fmt.Errorf("unmounting task disk %s: %w", dir, err)
	}
	return nil
}

// UnmountUnder unmounts every mount point at or below dir, deepest first: what an interrupted build left
// mounted in its work directory.
func UnmountUnder(dir string) error {
	dir = filepath.Clean(dir)
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountinfo(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	var errs []error
	for _, p := range points {
		errs = append(errs, unmount(p))
	}
	return errors.Join(errs...)
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

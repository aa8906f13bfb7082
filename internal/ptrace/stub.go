package ptrace

import (
	"embed"
	"fmt"
	"sync"

	"github.com/lhpvm/lhpvm/internal/hv"
	"github.com/lhpvm/lhpvm/internal/srchash"
	"golang.org/x/sys/unix"
)

//go:generate make -s -C stub

// stubBin is the directory stub/Makefile builds the stub program
// (stub/stub.c) into. Like the guest image, the stub is a small generated
// file committed beside this package (as bpf2go commits its objects), so a
// plain `go build` or `go install` carries it; it holds its sources' hash,
// and TestStubIsCurrent fails when it is stale. The directory's README is
// always there, so the pattern matches even where the stub was removed.
//
//go:embed stub/bin
var stubBin embed.FS

// StubFile is the stub's path relative to the repository root.
const StubFile = "internal/ptrace/stub/bin/lhpvm-stub"

// stubImage is the stub program; nil in a build that lacks it.
var stubImage = func() []byte {
	b, err := stubBin.ReadFile("stub/bin/lhpvm-stub")
	if err != nil {
		return nil
	}
	return b
}()

// ErrStubNotBuilt: this build of lhpvm lacks the ptrace backend's stub. It
// says what the build lacks, not that the host lacks something: a build
// from the repository never does (the stub is committed).
var ErrStubNotBuilt = fmt.Errorf("%w: this lhpvm build lacks the ptrace backend's stub (%s was missing when it was built): restore it with git, or rebuild it with 'make generate'",
	hv.ErrNotBuilt, StubFile)

// StubSourceHash is the hash of the sources the embedded stub was built
// from, or why there is none.
func StubSourceHash() (string, error) {
	if len(stubImage) == 0 {
		return "", ErrStubNotBuilt
	}
	return srchash.Embedded(stubImage)
}

// mfdExec is MFD_EXEC (Linux 6.3): an executable memfd even where the
// vm.memfd_noexec sysctl makes memfds non-executable by default.
const mfdExec = 0x10

var stub struct {
	once sync.Once
	path string // /proc/self/fd/N of a sealed memfd holding stubImage
	err  error
}

// stubPath puts the stub into a sealed memfd once per process and returns
// the path ForkExec starts it from, so bin/lhpvm stays one file.
func stubPath() (string, error) {
	stub.once.Do(func() { stub.path, stub.err = loadStub() })
	return stub.path, stub.err
}

func loadStub() (string, error) {
	if len(stubImage) == 0 {
		return "", ErrStubNotBuilt
	}
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate("lhpvm-stub", flags|mfdExec)
	if err == unix.EINVAL { // before Linux 6.3
		fd, err = unix.MemfdCreate("lhpvm-stub", flags)
	}
	if err != nil {
		return "", fmt.Errorf("memfd_create for the stub: %w", err)
	}
	// ForkExec shuffles the child's inherited fds into place at 0 and 1
	// (using the next few numbers when some of them are low) before the
	// child resolves the path: keep ours clear of that.
	if fd < 10 {
		nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 10)
		unix.Close(fd)
		if err != nil {
			return "", fmt.Errorf("moving the stub's memfd: %w", err)
		}
		fd = nfd
	}
	for b := stubImage; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			unix.Close(fd)
			return "", fmt.Errorf("writing the stub to its memfd: %w", err)
		}
		b = b[n:]
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS,
		unix.F_SEAL_WRITE|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		unix.Close(fd)
		return "", fmt.Errorf("sealing the stub's memfd: %w", err)
	}
	return fmt.Sprintf("/proc/self/fd/%d", fd), nil // kept open for the life of the process
}

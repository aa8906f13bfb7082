package ptrace

import (
	"embed"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// stubBin is the directory stub/Makefile builds the stub program
// (stub/stub.c) into; its README is always there, so the pattern matches
// in a tree that was never built. Like the guest image, the stub is built
// by make and never committed.
//
//go:embed stub/bin
var stubBin embed.FS

// StubFile is the stub's path relative to the repository root.
const StubFile = "internal/ptrace/stub/bin/lhpvm-stub"

// stubImage is the stub program; nil in a binary built without make.
var stubImage = func() []byte {
	b, err := stubBin.ReadFile("stub/bin/lhpvm-stub")
	if err != nil {
		return nil
	}
	return b
}()

// errNoStub: this binary was built without its stub.
var errNoStub = errors.New("this lhpvm was built without the ptrace backend's stub (" + StubFile + "): build it with make")

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
		return "", errNoStub
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

// Package errkind says what kind of failure an error is, so that the
// command maps it to its exit status without knowing where it came from:
// a usage error (the user's to fix: a bad flag, scenario or image; exit
// 2), a failed run (exit 1), or an I/O error on a file (exit 1, the
// message names the file). The libraries the CLI calls (internal/runconfig,
// internal/sweep) mark their errors with these; cmd/lhpvm's main maps them.
package errkind

import (
	"fmt"
)

// UsageError is bad input: a flag, a scenario, an image, a directory that
// is not what the command needs.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// RunError is a run that failed: a guest fault, a failed self-check, a
// timeout, a backend this host lacks or a backend error.
type RunError struct{ Err error }

func (e *RunError) Error() string { return e.Err.Error() }
func (e *RunError) Unwrap() error { return e.Err }

// IOError is a file or directory that could not be read or written: Path.
// Its message is Err's, which names the file: an os error does, and so
// does each message this module wraps one in ("--out DIR: ...").
type IOError struct {
	Path string
	Err  error
}

func (e *IOError) Error() string { return e.Err.Error() }
func (e *IOError) Unwrap() error { return e.Err }

// Usage marks err as a usage error (nil stays nil).
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &UsageError{err}
}

// Usagef is Usage(fmt.Errorf(format, a...)).
func Usagef(format string, a ...any) error { return &UsageError{fmt.Errorf(format, a...)} }

// Run marks err as a failed run (nil stays nil).
func Run(err error) error {
	if err == nil {
		return nil
	}
	return &RunError{err}
}

// IO marks err as an I/O error on path (nil stays nil).
func IO(path string, err error) error {
	if err == nil {
		return nil
	}
	return &IOError{Path: path, Err: err}
}

// InterruptedError is a command stopped by the user (SIGINT or SIGTERM)
// after it wrote what it had: exit 130, as a shell reports a SIGINT.
type InterruptedError struct{ Err error }

func (e *InterruptedError) Error() string { return e.Err.Error() }
func (e *InterruptedError) Unwrap() error { return e.Err }

// Interrupted marks err as an interruption (nil stays nil).
func Interrupted(err error) error {
	if err == nil {
		return nil
	}
	return &InterruptedError{err}
}

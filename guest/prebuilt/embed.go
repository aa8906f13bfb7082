// Package prebuilt holds lhpvm's built-in guest: a tiny freestanding x86-64 kernel
// (C + asm in guest/) whose workloads run in ring 3. `make` builds it into
// image/ from the sources and the Go build embeds it; it is never committed.
// A binary built without make (go build alone) has no built-in guest, and
// says so when asked for one (ErrNotBuilt). A test fails when the embedded
// image was not built from the sources beside it (the image carries a hash
// of them in its .lhpvm_srchash section).
package prebuilt

import (
	"embed"
	"errors"
)

// image is the directory make builds the ELF into; its README is always
// there, so the embed pattern matches in a tree that was never built.
//
//go:embed image
var image embed.FS

// ImageFile is the image's path relative to the repository root.
const ImageFile = "guest/prebuilt/image/lhpvm-guest.elf"

// ErrNotBuilt: this binary was built without its guest image.
var ErrNotBuilt = errors.New("this lhpvm was built without its guest image (" + ImageFile + "): build it with make")

// Image is the built-in guest ELF; nil in a binary built without make.
var Image = func() []byte {
	b, err := image.ReadFile("image/lhpvm-guest.elf")
	if err != nil {
		return nil
	}
	return b
}()

// Package prebuilt holds lhpvm's built-in guest: a tiny freestanding x86-64 kernel
// (C + asm in guest/) whose workloads run in ring 3. The built image is a
// small generated file committed beside this package, as cilium/ebpf's
// bpf2go commits its objects, so `go build`, `go install` and `go test` work
// from a clone where make never ran and need no C compiler. It carries the
// hash of its sources in its .lhpvm_srchash section: `make` (or
// `go generate ./guest/prebuilt`) rebuilds it when they change, and
// TestImageIsCurrent fails when the committed image is stale.
package prebuilt

// The image includes the ABI header that package hypercall generates, so
// that comes first (go generate ./... visits guest/ before hypercall/).
//go:generate go generate ../../hypercall
//go:generate make -s -C ..

import (
	"embed"
	"errors"

	"github.com/lhpvm/lhpvm/internal/srchash"
)

// image is the directory the image is generated into; its README is always
// there, so the embed pattern matches even in a tree whose image was removed.
//
//go:embed image
var image embed.FS

// ImageFile is the image's path relative to the repository root.
const ImageFile = "guest/prebuilt/image/lhpvm-guest.elf"

// ErrNotBuilt: this build of lhpvm lacks its guest image. A build from the
// repository never does (the image is committed); one from a tree whose
// image was deleted does.
var ErrNotBuilt = errors.New("this lhpvm build lacks its built-in guest image (" + ImageFile +
	" was missing when it was built): restore it with git, or rebuild it with 'make generate'")

// Image is the built-in guest ELF; nil in a build that lacks it.
var Image = func() []byte {
	b, err := image.ReadFile("image/lhpvm-guest.elf")
	if err != nil {
		return nil
	}
	return b
}()

// SourceHash is the hash of the sources the built-in image was built from,
// or why there is none.
func SourceHash() (string, error) {
	if Image == nil {
		return "", ErrNotBuilt
	}
	return srchash.Embedded(Image)
}

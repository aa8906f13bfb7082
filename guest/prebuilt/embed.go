// Package prebuilt holds lhpvm's built-in guest: a tiny freestanding x86-64 kernel
// (C + asm in guest/) whose workloads run in ring 3. The built ELF is
// committed, like cilium/ebpf commits its compiled objects, so `go build` and
// `go test` work from a fresh clone; `make` rebuilds it when a source changes,
// and a test fails when the committed image was not built from the sources
// beside it (the image carries a hash of them in its .lhpvm_srchash section).
package prebuilt

import _ "embed"

// Image is the built-in guest ELF.
//
//go:embed lhpvm-guest.elf
var Image []byte

// ImageFile is Image's path relative to the repository root.
const ImageFile = "guest/prebuilt/lhpvm-guest.elf"

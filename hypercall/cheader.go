package hypercall

import "github.com/lhpvm/lhpvm/internal/cheader"

// HeaderPath is the generated C header, relative to the repository root.
const HeaderPath = "guest/include/lhpvm_abi.h"

// CHeader renders the C header for the guest from the source of abi.go.
func CHeader(abiSource []byte) ([]byte, error) {
	return cheader.Generate(abiSource, cheader.Options{
		Prefix: "LHPVM_",
		Guard:  "LHPVM_ABI_H",
		Source: "hypercall/abi.go",
	})
}

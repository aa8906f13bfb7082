// Command gen writes the guest's C header from hypercall/abi.go, the single
// declaration of the guest<->VMM ABI. Run it with `go generate ./hypercall`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/lhpvm/lhpvm/hypercall"
)

func main() {
	out := flag.String("o", "", "output file (default stdout)")
	flag.Parse()
	src, err := os.ReadFile("abi.go")
	if err == nil {
		var h []byte
		if h, err = hypercall.CHeader(src); err == nil {
			if *out == "" {
				_, err = os.Stdout.Write(h)
			} else {
				err = os.WriteFile(*out, h, 0o644)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

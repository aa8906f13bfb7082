package vmm

// Where a guest was, for a failure's message: its vCPUs' registers and
// what blocked them, with RIPs named by the image's symbols.

import (
	"debug/elf"
	"fmt"
	"strings"
)

// waiters describes the vCPUs blocked in WAIT.
func (vm *VM) waiters(blocked func(id int) bool) string {
	var b strings.Builder
	for id := range vm.calls {
		if gpa := vm.calls[id].waitAddr.Load(); gpa != 0 && blocked(id) {
			fmt.Fprintf(&b, " vCPU %d in WAIT(%#x, expected %d; now %d);", id, gpa,
				vm.calls[id].waitVal.Load(), vm.mem.Load32(gpa))
		}
	}
	return strings.TrimSuffix(b.String(), ";")
}

// where describes, after a stop, where each unfinished vCPU was.
func (vm *VM) where() string {
	var b strings.Builder
	for id, v := range vm.vcpus {
		if vm.calls[id].exited {
			continue
		}
		fmt.Fprintf(&b, " vCPU %d", id)
		if r := v.FinalRegs(); r != nil {
			fmt.Fprintf(&b, " at RIP %#x%s", r.RIP, vm.symbolize(r.RIP))
		}
		b.WriteString(";")
	}
	return strings.TrimSuffix(b.String(), ";")
}

// symbolize names the function containing addr, as " (name+0xoff)".
func (vm *VM) symbolize(addr uint64) string {
	var best elf.Symbol
	for _, s := range vm.img.Symbols {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value <= addr && addr < s.Value+max(s.Size, 1) {
			best = s
		}
	}
	if best.Name == "" {
		return ""
	}
	return fmt.Sprintf(" (%s+%#x)", best.Name, addr-best.Value)
}

package hv

//go:generate go run ./gensysnames -o sysnames_gen.go

// x32Bit marks an x32 system-call number (__X32_SYSCALL_BIT).
const x32Bit = 0x40000000

// SyscallName is the Linux name of system call nr in convention arch, or
// "unknown" for a number the kernel headers lhpvm was built with do not list.
func SyscallName(arch SyscallArch, nr uint64) string {
	var n string
	switch arch {
	case ArchX8664:
		n = sysnamesX8664[nr]
	case ArchI386:
		n = sysnamesI386[nr]
	case ArchX32:
		n = sysnamesX32[nr&^x32Bit]
	}
	if n == "" {
		return "unknown"
	}
	return n
}

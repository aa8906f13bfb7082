# srchash.mk: the rules of a committed generated ELF file (the guest image,
# the ptrace stub), included by guest/Makefile and internal/ptrace/stub/Makefile.
# Like cilium/ebpf's bpf2go objects, the file is committed beside the Go code
# that embeds it, so `go build` and `go install` need no C compiler; it
# carries in its .lhpvm_srchash section the sha256 of the sources it was built
# from (package srchash reads it). The includer sets:
#   OUT     the committed ELF file, relative to its Makefile
#   NAME    its path from the repository root, for messages
#   HASHED  its sources, in byte-wise (LC_ALL=C) order
# and has a rule for $(OUT) that builds it from scratch.
#
#   make         rebuilds $(OUT) only when its sources changed
#   make check   fails when $(OUT) was not built from the sources beside it
#   make srchash prints the hash of the current sources

SRCHASH_NOW = cat $(HASHED) | sha256sum | cut -c1-64
SRCHASH_IN  = t=$$(mktemp) && { objcopy --dump-section .lhpvm_srchash=$$t $(OUT) /dev/null 2>/dev/null && cat $$t; rm -f $$t; }

.PHONY: all check srchash

all:
	@if [ "$$($(SRCHASH_NOW))" != "$$($(SRCHASH_IN))" ]; then \
		echo "$(NAME): sources changed, rebuilding (commit the new file with them)"; \
		rm -f $(OUT) && $(MAKE) --no-print-directory $(OUT); fi

check:
	@if [ "$$($(SRCHASH_NOW))" != "$$($(SRCHASH_IN))" ]; then \
		echo "$(NAME) is stale: it was not built from the sources beside it." >&2; \
		echo "Run 'make generate' (or 'go generate ./...') and commit $(NAME) with its sources." >&2; \
		exit 1; fi

srchash:
	@$(SRCHASH_NOW)

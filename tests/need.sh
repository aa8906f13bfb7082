#!/usr/bin/env bash
# need.sh CHECK=PACKAGE ...: the one installer of the project. For each pair
# whose CHECK fails, installs PACKAGE from Debian's packages with apt-get
# (refreshing apt's lists once, and only when something is missing). CHECK
# is a command name (found on PATH), an absolute path (must exist), or
# "tsan" (gcc links a -fsanitize=thread program). Needs root to install;
# without it, says what is missing and exits 1. Nothing is downloaded from
# anywhere but Debian's archive.
#
#   tests/need.sh spin=spin shellcheck=shellcheck /bin/busybox=busybox-static
set -euo pipefail

have() {
	case $1 in
	/*) [ -e "$1" ] ;;
	tsan)
		local probe
		probe=$(mktemp)
		echo 'int main(void){return 0;}' | gcc -fsanitize=thread -x c - -o "$probe" 2>/dev/null
		local rc=$?
		rm -f "$probe"
		return $rc ;;
	*) command -v "$1" >/dev/null ;;
	esac
}

missing=()
for pair in "$@"; do
	check=${pair%%=*} pkg=${pair#*=}
	if [ -z "$check" ] || [ -z "$pkg" ] || [ "$check" = "$pair" ]; then
		echo "need.sh: want CHECK=PACKAGE, got '$pair'" >&2
		exit 2
	fi
	have "$check" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "missing Debian packages: ${missing[*]}: install them (apt-get install ${missing[*]}), or run as root" >&2
	exit 1
fi
echo "installing from Debian's packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

package runconfig

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"64M": 64 << 20, "64MiB": 64 << 20, "64mb": 64 << 20, "1G": 1 << 30, "65536K": 64 << 20,
		"1T": 1 << 40, "64": 64 << 20, " 2G ": 2 << 30, "0": 0,
	} {
		got, err := ParseSize(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "lots", "-1M", "+1M", "1.5G", "0x10M", "1P", "99999999999999999999M", "1 G", "M"} {
		_, err := ParseSize(bad)
		assert.Error(t, err, bad)
	}
}

// FuzzParseSize: a size is an error or a whole number of KiB no larger
// than 1 PiB; never a panic, never a wrapped-around product.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"64M", "1G", "65536K", "1T", "0", "18446744073709551615", "4096KiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n%1024 != 0 || n > 1<<50 {
			t.Fatalf("%q: %d", s, n)
		}
	})
}

package vmfile

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Size is a memory size in bytes. In TOML it is a string with a unit
// ("2G", "512M", "1.5GiB") or a bare integer meaning MiB (2048).
type Size uint64

// Size units.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

var sizeUnits = map[string]Size{
	"": MiB, "k": KiB, "kb": KiB, "kib": KiB,
	"m": MiB, "mb": MiB, "mib": MiB,
	"g": GiB, "gb": GiB, "gib": GiB,
	"t": TiB, "tb": TiB, "tib": TiB,
}

// ParseSize parses "2G", "512M", "1.5GiB" or "2048" (MiB).
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("invalid size %q: write a number with a unit, like \"2G\" or \"512M\" (a bare number means MiB)", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %q is not a number", s, num)
	}
	v := f * float64(mult)
	if v < 1 {
		return 0, fmt.Errorf("invalid size %q: the size must be positive", s)
	}
	if v > float64(64*TiB) {
		return 0, fmt.Errorf("invalid size %q: larger than 64T", s)
	}
	return Size(v), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String renders the size with the largest exact unit ("2G", "1536M").
func (s Size) String() string {
	for _, u := range []struct {
		n string
		v Size
	}{{"T", TiB}, {"G", GiB}, {"M", MiB}, {"K", KiB}} {
		if s >= u.v && s%u.v == 0 {
			return strconv.FormatUint(uint64(s/u.v), 10) + u.n
		}
	}
	return strconv.FormatUint(uint64(s), 10) + "B"
}

// Bytes returns the size in bytes. Give guix this number (guix system vm
// --image-size=N): guix has no unit "B", which String uses for sizes that
// are not whole KiB, and reads "GB" as 10^9 bytes where devvm reads 2^30.
func (s Size) Bytes() uint64 { return uint64(s) }

// MiB returns the size in whole MiB, rounded up (QEMU's -m unit).
func (s Size) MiB() uint64 { return (uint64(s) + uint64(MiB) - 1) / uint64(MiB) }

// Duration is a time.Duration written with a unit in TOML ("90s", "10m").
// Bare integers are refused: TOML's decoder would read them as nanoseconds.
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return fmt.Errorf("invalid duration %q: give a unit, like \"90s\" or \"10m\"", s)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("invalid duration %q: write a positive duration with a unit, like \"90s\" or \"10m\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

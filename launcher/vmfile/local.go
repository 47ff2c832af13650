package vmfile

import (
	"reflect"
	"slices"
	"strings"
)

// LocalKeys are the keys Vmfile.local may set: the machine's resources and
// timeouts, and host-side ports, so one developer can give the VM more
// memory or move a busy port without editing the shared Vmfile. Keys that
// change what is built or mounted (packages, channels, persistent, disk,
// shares, the user) stay in the Vmfile, so every copy of the checkout
// builds the same VM. A [[forward]] list in Vmfile.local replaces the
// Vmfile's whole list; every other key replaces the Vmfile's value.
var LocalKeys = []string{"memory", "cpus", "boot_timeout", "ssh.port", "ssh.forward_agent", "guix.build_timeout", "forward"}

// localKey reports whether Vmfile.local may write bare (a key path
// without indices): whole is the entry of LocalKeys that is bare or
// contains it (forward.host), "" for a table on the way (ssh).
func localKey(bare string) (whole string, ok bool) {
	for _, k := range LocalKeys {
		if bare == k || strings.HasPrefix(bare, k+".") {
			return k, true
		}
	}
	for _, k := range LocalKeys {
		if strings.HasPrefix(k, bare+".") {
			return "", true
		}
	}
	return "", false
}

// localChild checks a key Vmfile.local sets, and makes a list it sets
// replace the Vmfile's.
func (d *decoder) localChild(it *item) error {
	whole, ok := localKey(it.bare)
	if !ok {
		return d.errorf(it.path, it.line, "cannot be set in %s, which may set only %s: keys that change the VM's build or shares belong in the Vmfile, shared by everyone", LocalFileName, strings.Join(LocalKeys, ", "))
	}
	if whole != it.bare {
		return nil
	}
	d.vf.Local = append(d.vf.Local, whole)
	if it.t.Kind() == reflect.Slice {
		it.v.Set(reflect.Zero(it.t))
		for k := range d.vf.index {
			if k == whole || strings.HasPrefix(k, whole+"[") || strings.HasPrefix(k, whole+".") {
				delete(d.vf.index, k)
			}
		}
	}
	return nil
}

// FromLocal reports whether Vmfile.local set key (an entry of LocalKeys).
func (v *Vmfile) FromLocal(key string) bool { return slices.Contains(v.Local, key) }

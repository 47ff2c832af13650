package hostenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKVMNeedsCPUFlag(t *testing.T) {
	env := FromOS()
	dir := t.TempDir()
	env.KVMDevice = filepath.Join(dir, "kvm")
	os.WriteFile(env.KVMDevice, nil, 0o666)
	env.CPUInfo = filepath.Join(dir, "cpuinfo")
	os.WriteFile(env.CPUInfo, []byte("processor\t: 0\nflags\t\t: fpu sse2 hypervisor\n"), 0o644)
	if k := env.KVM(); k.Usable || !strings.Contains(k.Reason, "vmx") {
		t.Errorf("no vmx flag: %+v", k)
	}
	os.WriteFile(env.CPUInfo, []byte("flags\t\t: fpu vmx sse2\n"), 0o644)
	if k := env.KVM(); !k.Usable {
		t.Errorf("vmx flag and accessible device: %+v", k)
	}
	os.Chmod(env.KVMDevice, 0)
	if os.Getuid() != 0 {
		if k := env.KVM(); k.Usable {
			t.Error("inaccessible device counted as usable")
		}
	}
	os.Remove(env.KVMDevice)
	if k := env.KVM(); k.Usable || !strings.Contains(k.Reason, "does not exist") {
		t.Errorf("missing device: %+v", k)
	}
}

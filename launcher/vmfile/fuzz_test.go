package vmfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// FuzzParse feeds arbitrary text to Parse. It must never panic, never
// write, and either refuse the text with an *Error or return a Vmfile that
// satisfies what the rest of devvm relies on. The corpus is kept in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	if example, err := os.ReadFile("../../Vmfile.example"); err == nil {
		f.Add(example)
	}
	f.Add(Template("qbuf"))
	f.Add([]byte(""))
	f.Add([]byte("[[share]]\nguest = \"/mnt/a\"\n[[share]]\nguest = \"/mnt/b\"\ntag = \"b\"\n"))
	f.Add([]byte("backend = \"microvm\"\n[microvm.machines.vm1]\naddress = \"10.1.0.2\"\n[microvm.remote]\ndestination = \"root@h\"\ncheckout = \"/r\"\n"))
	f.Add([]byte("memory = 99999999999999999999999\ncpus = -9223372036854775808\n"))
	f.Add([]byte("share = [{guest = \"/a\",\n tag = \"x\"},]\nssh = {port = 1}\n"))
	f.Add([]byte("persistent = true\ndisk = \"40G\"\n[guix]\nload_path = [\".guix\"]\ndisable_authentication = true\n"))
	f.Add([]byte("memory = \"8G\"\n[ssh]\nport = 2222\n[[forward]]\nhost = 18080\nguest = 80\n[microvm]\nmachines.vm1.address = \"a\"\n[microvm.machines.vm2]\n"))

	dir := f.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub dir,1"), 0o755); err != nil {
		f.Fatal(err)
	}
	path, localPath := filepath.Join(dir, FileName), filepath.Join(dir, LocalFileName)
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n")) + 1
		// Never accept what TOML forbids, never call valid TOML invalid
		// (go-toml/v2's decoder is the reference).
		tomlErr := toml.Unmarshal(data, new(map[string]any))
		v, err := Parse(path, data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is a %T, not *Error", err, err)
			}
			if strings.Contains(e.Msg, errDecoderCrash.Error()) || e.Path != path || e.Msg == "" || e.Line < 0 || e.Line > lines+1 {
				t.Fatalf("bad error %#v", e)
			}
			if tomlErr == nil && strings.HasPrefix(e.Msg, "invalid TOML") {
				t.Fatalf("valid TOML refused: %v", err)
			}
			return
		}
		if tomlErr != nil {
			t.Fatalf("go-toml refuses what Parse accepts: %v", tomlErr)
		}
		for k, p := range v.index {
			if p.line < 1 || p.line > lines || p.local {
				t.Fatalf("index put %s on line %d of %d", k, p.line, lines)
			}
		}
		checkInvariants(t, v)
		if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 {
			t.Fatalf("Parse changed %s: %v %v", dir, ents, err)
		}
		// The same text as Vmfile.local: only its keys, errors naming it.
		lv, err := parse(path, nil, localPath, data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Path != localPath && e.Path != path || e.Msg == "" {
				t.Fatalf("bad error %#v", err)
			}
			return
		}
		for _, k := range lv.Local {
			if !slices.Contains(LocalKeys, k) {
				t.Fatalf("Vmfile.local set %s", k)
			}
		}
		checkInvariants(t, lv)
	})
}

func checkInvariants(t *testing.T, v *Vmfile) {
	t.Helper()
	if !nameRe.MatchString(v.Name) {
		t.Fatalf("name %q", v.Name)
	}
	if v.Backend != BackendGuix && v.Backend != BackendMicroVM {
		t.Fatalf("backend %q", v.Backend)
	}
	if v.Memory < 128*MiB || v.Memory > 64*TiB || v.CPUs < 1 || v.CPUs > 256 {
		t.Fatalf("memory %d cpus %d", v.Memory, v.CPUs)
	}
	if v.BootTimeout <= 0 || v.Guix.BuildTimeout <= 0 {
		t.Fatalf("timeouts %d %d", v.BootTimeout, v.Guix.BuildTimeout)
	}
	if v.SSH.Port < 1 || v.SSH.Port > 65535 || !userRe.MatchString(v.SSH.User) {
		t.Fatalf("ssh %+v", v.SSH)
	}
	if v.Guix.Command == "" || v.Guix.Config == "" || v.Guix.Channels == "" || slices.ContainsFunc(v.Guix.LoadPath, badText) {
		t.Fatalf("guix %+v", v.Guix)
	}
	if v.Persistent != (v.Disk != 0) || v.Persistent && v.Disk < MinDisk {
		t.Fatalf("persistent %v disk %d", v.Persistent, v.Disk)
	}
	if v.SSH.Port < unprivilegedPorts() {
		t.Fatalf("privileged ssh port %d", v.SSH.Port)
	}
	var tags, guests []string
	for _, s := range v.Shares {
		if !tagRe.MatchString(s.Tag) || checkGuest(s.Guest) != "" || s.Host == "" ||
			(s.Mode != ShareVirtio && s.Mode != ShareSSH) || slices.Contains(tags, s.Tag) || slices.Contains(guests, s.Guest) {
			t.Fatalf("share %+v", s)
		}
		if st, err := os.Stat(v.Resolve(s.Host)); err != nil || !st.IsDir() {
			t.Fatalf("share host %q: %v", s.Host, err)
		}
		if home := "/home/" + v.SSH.User; s.Guest == home || strings.HasPrefix(s.Guest, home+"/") {
			t.Fatalf("share in the home: %+v", s)
		}
		tags, guests = append(tags, s.Tag), append(guests, s.Guest)
	}
	for _, fw := range v.Forwards {
		if fw.Host < unprivilegedPorts() || fw.Host > 65535 || fw.Guest < 1 || fw.Guest > 65535 || !isIPv4(fw.Bind) || (fw.Proto != "tcp" && fw.Proto != "udp") {
			t.Fatalf("forward %+v", fw)
		}
	}
	if v.Backend == BackendMicroVM && (v.MicroVM == nil || len(v.MicroVM.Machines) == 0) {
		t.Fatalf("microvm backend without machines")
	}
	if m := v.MicroVM; m != nil {
		for name, mc := range m.Machines {
			if !nameRe.MatchString(name) || mc.Address == "" || mc.Port < 1 || mc.Port > 65535 || !configRe.MatchString(mc.Config) {
				t.Fatalf("machine %q %+v", name, mc)
			}
		}
		if r := m.Remote; r != nil && (!destRe.MatchString(r.Destination) || r.Checkout == "" || r.Checkout[0] != '/') {
			t.Fatalf("remote %+v", r)
		}
	}
}

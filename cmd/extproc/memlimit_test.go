package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
		ok    bool
	}{
		{"v2 limit", map[string]string{"sys/fs/cgroup/memory.max": "1073741824\n"}, 1 << 30, true},
		{"v2 no limit", map[string]string{"sys/fs/cgroup/memory.max": "max\n"}, 0, false},
		{"v1 limit", map[string]string{"sys/fs/cgroup/memory/memory.limit_in_bytes": "536870912\n"}, 512 << 20, true},
		{"v1 no limit", map[string]string{"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0, false},
		{"garbage", map[string]string{"sys/fs/cgroup/memory.max": "lots\n"}, 0, false},
		{"no cgroup files", nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for name, v := range tc.files {
				p := filepath.Join(root, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, ok := cgroupMemoryLimit(root)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("got %d %v, want %d %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestApplyMemoryLimit(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "sys/fs/cgroup/memory.max")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("1000000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var set []int64
	record := func(n int64) int64 { set = append(set, n); return 0 }
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	t.Setenv("GOMEMLIMIT", "")
	applyMemoryLimit(log, 0.8, root, record)
	if len(set) != 1 || set[0] != 800000000 {
		t.Fatalf("set %v, want [800000000]", set)
	}
	applyMemoryLimit(log, 0, root, record) // disabled
	t.Setenv("GOMEMLIMIT", "300MiB")
	applyMemoryLimit(log, 0.8, root, record) // the operator's value wins
	if len(set) != 1 {
		t.Fatalf("set %v after a disabled and an overridden call", set)
	}
	if !strings.Contains(logs.String(), "GOMEMLIMIT=300MiB") {
		t.Errorf("log does not say GOMEMLIMIT wins:\n%s", logs.String())
	}
}

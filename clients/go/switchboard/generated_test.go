package switchboard_test

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeIsCurrent fails when switchboardv1 no longer matches the
// proto (or the pinned plugins), so the committed stubs cannot drift unseen.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	cmd := exec.CommandContext(contextFor(t, buildTimeout), "bash", filepath.Join(moduleRoot, "generate.sh"), "--check")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generate.sh --check: %v\n%s", err, out)
	}
}

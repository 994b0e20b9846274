package e2e

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A test run leaves nothing in the source tree: screenshots go to a
// temporary directory unless TRAINHOOK_SCREENSHOTS names one to keep them in.
func TestScreenshotsStayOutOfTheSourceTree(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	root, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	unset := func(string) string { return "" }
	dir, err := filepath.Abs(screenshotDir(t, unset))
	if err != nil {
		t.Fatal(err)
	}
	if dir == root || strings.HasPrefix(dir, root+string(os.PathSeparator)) {
		t.Errorf("screenshots go to %s, inside the source tree %s", dir, root)
	}

	asked := filepath.Join(t.TempDir(), "shots")
	set := func(name string) string {
		if name == EnvScreenshots {
			return asked
		}
		return ""
	}
	if got := screenshotDir(t, set); got != asked {
		t.Errorf("with %s=%s, screenshots go to %s", EnvScreenshots, asked, got)
	}
}

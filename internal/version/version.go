// Package version reports the module version and VCS revision a binary was
// built from (runtime/debug.ReadBuildInfo).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info is what the build recorded about itself.
type Info struct {
	Module    string `json:"module"`   // main module path
	Version   string `json:"version"`  // module version: a tag, a pseudo-version, or "(devel)"
	Revision  string `json:"revision"` // VCS revision, "unknown" when the build was not stamped
	Time      string `json:"time"`     // VCS commit time (RFC 3339), "" when not stamped
	Modified  bool   `json:"modified"` // the work tree had uncommitted changes
	GoVersion string `json:"goVersion"`
}

// Get reads the build information of the running binary.
func Get() Info {
	i := Info{Module: "github.com/marsmesh/marsmesh", Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return i
	}
	if bi.Main.Path != "" {
		i.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		i.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// String is the one line -version prints, e.g.
// "mars-server github.com/marsmesh/marsmesh (devel) revision 9823e00... go1.26.8".
func (i Info) String() string {
	rev := i.Revision
	if i.Modified {
		rev += " (modified)"
	}
	if i.Revision == "unknown" {
		rev += " (built without VCS stamping, e.g. -buildvcs=false)"
	}
	s := fmt.Sprintf("%s %s revision %s", i.Module, i.Version, rev)
	if i.Time != "" {
		s += " committed " + i.Time
	}
	return s + " " + i.GoVersion
}

// Package channels embeds the default Guix channel pin `devvm init` writes
// when guix is not installed (with guix, `guix describe -f channels` is used).
package channels

import _ "embed"

// Default is channels.scm pinning GNU Guix v1.5.0 by full commit.
//
//go:embed default.scm
var Default []byte

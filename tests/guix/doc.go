// Package guixtier is devvm's real-Guix test tier: it evaluates every shipped
// Guix template with a real GNU Guix (the Debian package, in a Debian sid
// chroot built by chroot.sh) and records real guix error outputs for the
// launcher's unit tests. The tests need root and carry the build tag
// guixtier:
//
//	go test -tags guixtier -count=1 -v ./tests/guix/
//
// With DEVVM_GUIX_RECORD=DIR set (e.g. ../../launcher/guix/testdata, relative
// to this directory) the recorded outputs are also written to DIR.
package guixtier

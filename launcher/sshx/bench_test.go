package sshx

import (
	"testing"
)

// BenchmarkRunTrue measures a new connection (handshake, auth, host key check) plus `true`.
func BenchmarkRunTrue(b *testing.B) {
	_, tg, c := connected(b)
	c.Close()
	ctx := testCtx(b)
	for b.Loop() {
		c, err := Dial(ctx, tg)
		if err != nil {
			b.Fatal(err)
		}
		if st, err := c.Run(ctx, "true", nil, nil, nil, false); err != nil || st != 0 {
			b.Fatalf("Run = %d, %v", st, err)
		}
		c.Close()
	}
}

// BenchmarkRunTrueReuse measures `true` in a new session on an established connection.
func BenchmarkRunTrueReuse(b *testing.B) {
	_, _, c := connected(b)
	ctx := testCtx(b)
	for b.Loop() {
		if st, err := c.Run(ctx, "true", nil, nil, nil, false); err != nil || st != 0 {
			b.Fatalf("Run = %d, %v", st, err)
		}
	}
}

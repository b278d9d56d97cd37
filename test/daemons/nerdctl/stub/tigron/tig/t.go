// Package tig stands in for nerdctl's test-only module (mod/tigron), which its go.mod points at
// a local folder that module downloads do not carry. cmd/nerdctl links nerdctl's pkg/testutil,
// whose compose helper names tig.T in its signatures and calls only Log and FailNow on it; this
// interface is all that the build needs. Written here, not copied.
package tig

// T is the part of a test handle that nerdctl's pkg/testutil uses.
type T interface {
	Log(args ...any)
	FailNow()
}

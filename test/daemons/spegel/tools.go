//go:build tools

// Package tools pins the upstream command the test bed builds from this module.
package tools

import _ "github.com/spegel-org/spegel"

//go:build tools

// Package tools pins the upstream commands the test bed builds from this module.
package tools

import (
	_ "github.com/moby/buildkit/cmd/buildctl"
	_ "github.com/moby/buildkit/cmd/buildkitd"
)

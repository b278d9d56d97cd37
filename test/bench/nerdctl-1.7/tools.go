//go:build tools

// Package tools pins the nerdctl the bench runs on containerd 1.6 nodes (v1.x still imports
// client-side, through the content and images services that 1.6 has).
package tools

import _ "github.com/containerd/nerdctl/cmd/nerdctl"

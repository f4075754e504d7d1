//go:build !nometrics

package proxy

// countersOn is false only in the nometrics build.
const countersOn = true

//go:build !amd64

package flightrecorder

const tscSupported = false

func rdtsc() int64 { panic("flightrecorder: no TSC on this architecture") }

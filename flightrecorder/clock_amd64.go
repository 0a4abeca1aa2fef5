package flightrecorder

const tscSupported = true

// rdtsc reads the time-stamp counter.
func rdtsc() int64

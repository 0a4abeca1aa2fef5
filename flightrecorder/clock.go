package flightrecorder

import (
	"os"
	"strings"
	"time"
)

// The recorder timestamps ops with the cheapest monotonic clock there is and converts to
// wall-clock nanoseconds only when it is asked for a dump. On amd64, when the kernel itself
// trusts the time-stamp counter (its clocksource is "tsc": invariant and synchronised across
// CPUs), a tick is a TSC cycle: reading it costs ~10 ns against ~30 ns for the runtime's
// monotonic clock and ~55 ns for time.Now, and an op reads the clock twice. Elsewhere a tick is
// a nanosecond of the monotonic clock.
//
// Ticks become times by linear interpolation between two anchors, each a tick read next to a
// time.Now: one taken when the package starts and one taken at every Snapshot. The error is
// that of the anchors (tens of ns), whatever the time between them. A timestamp is converted
// once and then kept, so that successive dumps agree on it.

// clockStart is the first anchor.
var clockStart = newAnchor()

// anchor pairs a tick reading with the time it was taken.
type anchor struct {
	tick int64
	at   time.Time
}

// newAnchor reads both clocks, the tick clock on both sides of time.Now, and keeps the
// midpoint.
func newAnchor() anchor {
	t0 := ticks()
	at := time.Now()
	t1 := ticks()
	return anchor{tick: t0 + (t1-t0)/2, at: at}
}

// ticks reads the recorder's clock, which never reads 0 (a slot's 0 means "not reached").
func ticks() int64 {
	if tscClock {
		return rdtsc()
	}
	return int64(time.Since(monoBase)) + 1
}

// monoBase is the origin of ticks when they are monotonic-clock nanoseconds.
var monoBase = time.Now()

// tscClock is set on amd64 when the kernel's clocksource is the TSC.
var tscClock = tscSupported && kernelClocksource() == "tsc"

func kernelClocksource() string {
	b, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// minCalibration is the shortest span between anchors that the TSC rate is measured over: a
// dump taken sooner after start waits for the rest (once per process).
const minCalibration = 10 * time.Millisecond

// converter turns ticks into wall-clock ns since the Unix epoch (monotonic: wall-clock steps
// after start do not show) and tick spans into durations.
type converter struct {
	start   anchor
	startNs int64
	nsPer   float64 // ns per tick
}

// newConverter anchors a conversion at now.
func newConverter() converter {
	c := converter{start: clockStart, startNs: clockStart.at.UnixNano(), nsPer: 1}
	if !tscClock {
		return c
	}
	if wait := minCalibration - time.Since(clockStart.at); wait > 0 {
		time.Sleep(wait)
	}
	end := newAnchor()
	if end.tick > c.start.tick {
		c.nsPer = float64(end.at.Sub(c.start.at)) / float64(end.tick-c.start.tick)
	}
	return c
}

// wallNs is tick as wall-clock ns since the Unix epoch.
func (c converter) wallNs(tick int64) int64 {
	return c.startNs + int64(float64(tick-c.start.tick)*c.nsPer)
}

// ms is a span of ticks in milliseconds.
func (c converter) ms(span int64) float64 { return float64(span) * c.nsPer / 1e6 }

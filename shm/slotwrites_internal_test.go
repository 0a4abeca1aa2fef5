package shm

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The trials: six ops in a row in every window of a class's ops, three through the caches then
// three past them, at the same op counts on every rank whatever the mode in use, and only the
// last two of each three measured.
func TestSlotWritesTrials(t *testing.T) {
	var word uint64 = 1 << 2 // class 2, [64 KiB, 128 KiB), is past the caches
	s := slotWrites{modes: &word, lead: true}
	for op := uint64(1); op <= slotWritesSettle+2*256+8; op++ {
		w := s.begin(writesReduce, 100<<10, true)
		want, trial, last := true, false, false
		switch op % slotWritesWindow(op) {
		case 2:
			want = false
		case 3, 4:
			want, trial = false, true
		case 6:
			trial = true
		case 7:
			trial, last = true, true
		}
		if w.through != want || (w.trial != nil) != trial || w.last != last {
			t.Fatalf("op %d of the class: through %v, measured %v, last %v; want %v, %v, %v", op, w.through, w.trial != nil, w.last, want, trial, last)
		}
		if trial && w.trial != &s.classes[writesReduce][2] {
			t.Fatalf("op %d of 100 KiB measured in the wrong class", op)
		}
	}
	if w := s.begin(writesReduce, 8<<10, true); w.trial != nil || w.through {
		t.Errorf("an 8 KiB op: through %v, measured %v; want cached and unmeasured", w.through, w.trial != nil)
	}
	s.begin(writesReduce, 1<<40, true)
	if got := s.classes[writesReduce][slotWritesClasses-1].ops; got != 1 {
		t.Errorf("after a 1 TiB op the last class counts %d ops, want 1", got)
	}
}

// The mode follows the median ratio of the last trials (each mode's cheapest op), past the
// caches only when it wins by the margin, and one odd trial does not flip it.
func TestSlotWritesChoice(t *testing.T) {
	var c trials
	c.record(true, 1, true) // trials past the caches with none through them: ignored
	if c.through || c.filled != 0 {
		t.Fatal("a trial without the caches' half counted")
	}
	trial := func(cached, past float64) {
		c.record(false, 2*cached, false)
		c.record(false, cached, false)
		c.record(true, past, false)
		c.record(true, 3*past, true)
	}
	trial(10, 9.7) // 0.97: inside the margin, stays through the caches
	if c.through {
		t.Fatal("past the caches chosen at a ratio of 0.97")
	}
	trial(10, 2) // median of 0.97 and 0.2: 0.585
	if !c.through {
		t.Fatal("past the caches not chosen at a median ratio of 0.585")
	}
	trial(10, 30) // 0.97, 0.2, 3: median 0.97, between the margin and 1: the mode stays
	if !c.through {
		t.Fatal("one dear trial flipped the choice")
	}
	trial(10, 30) // 3 replaces 0.97: 0.2, 3, 3
	if c.through {
		t.Fatal("past the caches still chosen at a median ratio of 3")
	}
}

func TestSlotWritesSetting(t *testing.T) {
	for v, want := range map[string]ntSetting{"": ntAuto, "auto": ntAuto, "always": ntAlways, "NEVER": ntNever, "0": ntNever} {
		if got, err := parseNTSetting(v); err != nil || got != want {
			t.Errorf("parseNTSetting(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	if _, err := parseNTSetting("fast"); err == nil || !strings.Contains(err.Error(), "GCCL_SHM_NONTEMPORAL") || !strings.Contains(err.Error(), "auto, always or never") {
		t.Errorf("parseNTSetting(\"fast\") = %v; want an error naming the variable and its values", err)
	}
	var word uint64
	always := slotWrites{setting: ntAlways, modes: &word, lead: true}
	never := slotWrites{setting: ntNever, modes: &word, lead: true}
	for range 4 {
		if w := always.begin(writesReduce, 1<<20, true); !w.through || w.trial != nil {
			t.Errorf("always: through %v, measured %v", w.through, w.trial != nil)
		}
		if w := never.begin(writesReduce, 1<<20, true); w.through || w.trial != nil {
			t.Errorf("never: through %v, measured %v", w.through, w.trial != nil)
		}
	}
}

// Rank 0 publishes each class's mode when it changes; the other ranks follow the word, and
// take part in the trials, without measuring.
func TestSlotWritesLeaderPublishes(t *testing.T) {
	var word uint64
	lead := slotWrites{modes: &word, lead: true}
	follow := slotWrites{modes: &word}
	const n = 32 << 10 // class 1
	// op runs one op of the class on both ranks, rank 0's taking `took`, and checks the mode.
	op := func(what string, through bool, took time.Duration) {
		t.Helper()
		w, f := lead.begin(writesReduce, n, true), follow.begin(writesReduce, n, true)
		if w.through != through || f.through != through || f.trial != nil {
			t.Fatalf("%s: rank 0 through %v, other through %v (measured %v); want through %v", what, w.through, f.through, f.trial != nil, through)
		}
		w.start = sinceClock() - took
		w.done(n, nil)
	}
	trials := func(cached, past time.Duration) {
		t.Helper()
		op("switch to through the caches", false, 0)
		op("trial through the caches", false, cached)
		op("trial through the caches", false, cached)
		op("switch past the caches", true, 0)
		op("trial past the caches", true, past)
		op("trial past the caches", true, past)
	}
	op("first op", false, 0)
	trials(time.Millisecond, time.Microsecond)
	if word != 1<<1 {
		t.Fatalf("modes word %b after past-the-caches won in class 1, want %b", word, 1<<1)
	}
	for i := 8; i <= 64+1; i++ {
		op("an op between trials", true, time.Second) // not trials: not measured
	}
	trials(time.Millisecond, time.Second) // ratios 0.001 and 1000: median 500
	if word != 0 {
		t.Errorf("modes word %b after past-the-caches lost, want 0", word)
	}
	op("next op", false, 0)
}

// Each kind of collective has its own classes, trials and bits in the modes word: a gather's ops
// neither advance a reduce's trials nor take its mode.
func TestSlotWritesKinds(t *testing.T) {
	var word uint64
	lead := slotWrites{modes: &word, lead: true}
	for range 3 {
		lead.begin(writesGather, 32<<10, true)
	}
	if lead.classes[writesReduce][1].ops != 0 || lead.classes[writesGather][1].ops != 3 {
		t.Fatalf("after 3 gathers of 32 KiB: reduce's class counts %d ops, gather's %d; want 0 and 3",
			lead.classes[writesReduce][1].ops, lead.classes[writesGather][1].ops)
	}
	word = 1 << (int(writesGather)*slotWritesClasses + 1) // gathers of 32 KiB past the caches
	for range 64 {
		lead.begin(writesReduce, 32<<10, true) // through the first trial window
	}
	if w := lead.begin(writesReduce, 32<<10, true); w.through {
		t.Error("a reduce took the gathers' mode")
	}
	for lead.classes[writesGather][1].ops < 64 { // past the gathers' trials
		lead.begin(writesGather, 32<<10, true)
	}
	if w := lead.begin(writesGather, 32<<10, true); !w.through {
		t.Error("a gather did not take its own mode")
	}
	// A failed trial is not a measure.
	for lead.classes[writesBroadcast][0].ops < 3 {
		lead.begin(writesBroadcast, 16<<10, true)
	}
	w := lead.begin(writesBroadcast, 16<<10, true) // the second trial through the caches (op 4)
	if w.trial == nil {
		t.Fatal("op 4 of a class is not a trial")
	}
	if err := w.done(16<<10, context.Canceled); err != context.Canceled {
		t.Fatalf("done returned %v, want the op's error", err)
	}
	if c := lead.classes[writesBroadcast][0]; c.cached != 0 {
		t.Errorf("a failed trial recorded a cost of %v", c.cached)
	}
}

// In an op where rank 0 only writes (a rooted op whose root is another rank), its time says
// nothing of the readers' cost: the trials still switch the mode on every rank, unmeasured.
func TestSlotWritesUnmeasuredWhenLeadOnlyWrites(t *testing.T) {
	var word uint64
	lead := slotWrites{modes: &word, lead: true}
	for op := uint64(1); op <= 8; op++ {
		w := lead.begin(writesReduce, 32<<10, false)
		if w.trial != nil {
			t.Fatalf("op %d measured though rank 0 only writes", op)
		}
		if want := op%64 >= 5 && op%64 <= 7; w.through != want {
			t.Fatalf("op %d: through %v, want %v (the trials' modes)", op, w.through, want)
		}
	}
}

// With too many ranks per core, auto writes through the caches and runs no trials; always still
// writes past them.
func TestSlotWritesCrowded(t *testing.T) {
	var word uint64 = 1 << 1
	auto := slotWrites{modes: &word, lead: true, crowded: true}
	always := slotWrites{setting: ntAlways, modes: &word, lead: true, crowded: true}
	for op := 1; op <= 8; op++ {
		if w := auto.begin(writesReduce, 32<<10, true); w.through || w.trial != nil {
			t.Fatalf("crowded auto, op %d: through %v, measured %v; want through the caches, unmeasured", op, w.through, w.trial != nil)
		}
		if w := always.begin(writesReduce, 32<<10, true); !w.through {
			t.Fatalf("crowded always, op %d: through the caches", op)
		}
	}
}

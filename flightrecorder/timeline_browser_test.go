//go:build unix

package flightrecorder_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	"github.com/gccl/gccl/flightrecorder"
)

// chromium finds Debian's headless-capable browser. Without it the browser
// test is skipped, except in CI (CI=true), whose .ci/run installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found: CI installs it (.ci/run: apt-get install -y chromium)")
	}
	t.Skip("chromium not found: apt-get install -y chromium")
	return ""
}

// runChromium runs headless Chromium on args and returns its stdout. Its
// whole process group is killed if it outlives the timeout.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--no-default-browser-check",
		"--disable-extensions", "--disable-background-networking", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--window-size=1500,900"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("chromium %s: %v", args[0], time.Since(start).Round(time.Millisecond))
	require.NoError(t, err, "chromium %v; stderr:\n%s", args, stderr.String())
	return stdout.Bytes()
}

// browserJob records a 4-rank job with one Recorder per fake rank (in one
// process, as the analysis unit tests do): five all-reduces that every rank
// completes, a send from rank 0 to rank 1, then all_reduce #6, which ranks
// 0-2 start and rank 3 never joins: it is in an all_gather on its own group
// "1" instead. The sleeps give the ops visible durations.
func browserJob() map[int]flightrecorder.Dump {
	j := newJob(4, 64)
	j[3].rec.RegisterGroup(flightrecorder.GroupInfo{ID: 1, Name: "1", Desc: "tp", Ranks: []int{3}})
	op := func(g int, name string, seq, p2pSeq int64) flightrecorder.OpRecord {
		return flightrecorder.OpRecord{Group: g, ProfilingName: name, CollectiveSeqID: seq, P2PSeqID: p2pSeq, OpID: seq + p2pSeq,
			InputSizes: [][]int64{{1024}}, InputDtypes: []string{"Float"}, OutputSizes: [][]int64{{1024}}, OutputDtypes: []string{"Float"},
			Timeout: time.Minute}
	}
	for s := int64(1); s <= 5; s++ {
		ids := make([]uint64, 4)
		for r, fr := range j {
			ids[r] = fr.rec.Record(op(0, "gloo:all_reduce", s, 0))
			fr.rec.Started(ids[r])
		}
		time.Sleep(3 * time.Millisecond)
		for r, fr := range j {
			fr.rec.Completed(ids[r])
		}
		time.Sleep(2 * time.Millisecond)
	}
	send := op(0, "gloo:send 0->1", 5, 1)
	send.IsP2P = true
	recv := op(0, "gloo:recv 1<-0", 5, 1)
	recv.IsP2P = true
	ids := []uint64{j[0].rec.Record(send), j[1].rec.Record(recv)}
	j[0].rec.Started(ids[0])
	j[1].rec.Started(ids[1])
	time.Sleep(2 * time.Millisecond)
	j[0].rec.Completed(ids[0])
	j[1].rec.Completed(ids[1])
	time.Sleep(2 * time.Millisecond)
	for _, fr := range j[:3] {
		fr.rec.Started(fr.rec.Record(op(0, "gloo:all_reduce", 6, 1)))
	}
	time.Sleep(4 * time.Millisecond)
	gather := op(1, "gloo:all_gather", 1, 0)
	gather.CaptureStack = true
	j[3].rec.Started(j[3].rec.Record(gather))
	return dumpsOf(j)
}

// browserProbe runs in the page after its own script: it measures what the
// browser rendered, hovers the highlighted op, and writes the results into
// <pre id="test-result"> as JSON, which --dump-dom prints.
const browserProbe = `<script>
(function(){
var res={rows:[],ops:[],missing:[],tip:{}};
document.querySelectorAll('#timeline g.row').forEach(function(g){var b=g.getBoundingClientRect();
res.rows.push({rank:g.dataset.rank,cls:g.getAttribute('class'),w:b.width,h:b.height});});
document.querySelectorAll('#timeline rect.op').forEach(function(r){var b=r.getBoundingClientRect(),cs=getComputedStyle(r);
res.ops.push({rank:r.dataset.rank,seq:r.dataset.seq,op:r.dataset.op,group:r.dataset.group,finding:r.dataset.finding||'',
cls:r.getAttribute('class'),x:b.x,y:b.y,w:b.width,h:b.height,fill:cs.fill,stroke:cs.stroke});});
document.querySelectorAll('#timeline g.missing').forEach(function(m){var b=m.getBoundingClientRect();
res.missing.push({rank:m.dataset.rank,seq:m.dataset.seq,op:m.dataset.op,group:m.dataset.group,w:b.width,h:b.height});});
var f=document.querySelector('#timeline rect.finding'),tip=document.getElementById('tip');
if(f){var b=f.getBoundingClientRect();
f.dispatchEvent(new MouseEvent('mouseover',{bubbles:true,clientX:b.x+b.width/2,clientY:b.y+b.height/2}));
res.tip={shown:!tip.hidden,text:tip.textContent,titleWhileShown:!!f.querySelector('title'),w:tip.getBoundingClientRect().width};
document.getElementById('timeline').dispatchEvent(new MouseEvent('mouseleave'));
res.tip.hiddenAfter=tip.hidden;res.tip.titleAfter=!!f.querySelector('title');}
var pre=document.createElement('pre');pre.id='test-result';pre.textContent=JSON.stringify(res);document.body.appendChild(pre);
})();
</script>
`

type probeResult struct {
	Rows []struct {
		Rank, Cls string
		W, H      float64
	}
	Ops []struct {
		Rank, Seq, Op, Group, Finding, Cls string
		X, Y, W, H                         float64
		Fill, Stroke                       string
	}
	Missing []struct {
		Rank, Seq, Op, Group string
		W, H                 float64
	}
	Tip struct {
		Shown, TitleWhileShown, HiddenAfter, TitleAfter bool
		Text                                            string
		W                                               float64
	}
}

// TestTimelineInBrowser writes the timeline of a hung 4-rank job, loads it in
// headless Chromium and checks what the browser rendered. The screenshot
// and the page are kept in $GCCL_TEST_ARTIFACTS if set, else in the test's
// temporary directory.
func TestTimelineInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	bin := chromium(t)
	dir := os.Getenv("GCCL_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))

	dumps := browserJob()
	rep := flightrecorder.Analyze(dumps, flightrecorder.AnalyzeOptions{})
	require.False(t, rep.OK())
	require.Equal(t, flightrecorder.FindingNotJoined, rep.Findings[0].Kind, rep.Verdict)
	var page bytes.Buffer
	require.NoError(t, flightrecorder.WriteTimeline(&page, dumps, rep, flightrecorder.TimelineOptions{Title: "hung 4-rank job"}))
	pagePath := filepath.Join(dir, "timeline.html")
	require.NoError(t, os.WriteFile(pagePath, page.Bytes(), 0o644))

	// The DOM after the page's scripts and the probe ran.
	probed := strings.Replace(page.String(), "</body>", browserProbe+"</body>", 1)
	probePath := filepath.Join(t.TempDir(), "probe.html")
	require.NoError(t, os.WriteFile(probePath, []byte(probed), 0o644))
	dom := runChromium(t, bin, "--dump-dom", "file://"+probePath)
	doc, err := html.Parse(bytes.NewReader(dom))
	require.NoError(t, err)
	var result []*html.Node
	for _, pre := range findAll(doc, "pre") {
		if attr(pre, "id") == "test-result" {
			result = append(result, pre)
		}
	}
	require.Len(t, result, 1, "the probe ran; DOM:\n%s", dom)
	var got probeResult
	require.NoError(t, json.Unmarshal([]byte(text(result[0])), &got))

	assert.Len(t, findAll(doc, "svg"), 8, "the chart and the legend's swatches")
	require.Len(t, got.Rows, 4, "a row per rank")
	for i, row := range got.Rows {
		assert.Equal(t, string(rune('0'+i)), row.Rank)
		assert.InDelta(t, 30, row.H, 0.5, "rank %s's row height", row.Rank)
		assert.Greater(t, row.W, 1000.0)
	}
	perRank := map[string]int{}
	const (
		green  = "rgb(78, 154, 74)"
		orange = "rgb(240, 160, 48)"
		red    = "rgb(255, 26, 26)"
	)
	var cited []string
	for _, op := range got.Ops {
		perRank[op.Rank]++
		assert.Greater(t, op.W, 0.0, "op %+v rendered with a width", op)
		assert.InDelta(t, 18, op.H, 0.5, "op %+v rendered with its height", op)
		switch {
		case strings.Contains(op.Cls, "state-completed"):
			assert.Equal(t, green, op.Fill, "%+v", op)
		case strings.Contains(op.Cls, "state-started"):
			assert.Equal(t, orange, op.Fill, "%+v", op)
		default:
			t.Errorf("unexpected op %+v", op)
		}
		if strings.Contains(op.Cls, "finding") {
			cited = append(cited, op.Rank)
			assert.Equal(t, red, op.Stroke, "%+v", op)
			assert.Equal(t, "6", op.Seq)
			assert.Equal(t, "all_reduce", op.Op)
			assert.Equal(t, "0", op.Group)
			assert.Equal(t, "0", op.Finding)
		} else {
			assert.Equal(t, "none", op.Stroke, "%+v", op)
		}
	}
	assert.Equal(t, map[string]int{"0": 7, "1": 7, "2": 6, "3": 6}, perRank, "boxes per rank")
	assert.Equal(t, []string{"0", "1", "2"}, cited)
	require.Len(t, got.Missing, 1)
	m := got.Missing[0]
	assert.Equal(t, []string{"3", "6", "all_reduce", "0"}, []string{m.Rank, m.Seq, m.Op, m.Group})
	assert.Greater(t, m.W, 0.0)
	assert.Greater(t, m.H, 0.0)

	assert.True(t, got.Tip.Shown, "hovering shows the details")
	assert.Contains(t, got.Tip.Text, "rank 0: gloo:all_reduce")
	assert.Contains(t, got.Tip.Text, "never joined all_reduce #6")
	assert.Greater(t, got.Tip.W, 0.0)
	assert.False(t, got.Tip.TitleWhileShown, "the native tooltip is held back while the styled one shows")
	assert.True(t, got.Tip.HiddenAfter)
	assert.True(t, got.Tip.TitleAfter)

	// A screenshot of the page itself: it shows the completed ops' green.
	shot := filepath.Join(dir, "timeline.png")
	runChromium(t, bin, "--screenshot="+shot, "file://"+pagePath)
	f, err := os.Open(shot)
	require.NoError(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	require.NoError(t, err)
	greenPixels := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 == 78 && g>>8 == 154 && bl>>8 == 74 {
				greenPixels++
			}
		}
	}
	assert.Greater(t, greenPixels, 500, "completed ops are drawn in the screenshot")
	t.Logf("screenshot %s, page %s (%d bytes)", shot, pagePath, page.Len())
}

package torch

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The distributed tests start the test binary again as two child processes
// (ranks 0 and 1) that run TestDistWorker with torchrun's variables set and
// MASTER_ADDR=127.0.0.1: everything stays on the loopback interface, where
// Gloo binds because the master address is a loopback one (no
// GLOO_SOCKET_IFNAME needed; one inherited from the environment is removed).

const (
	distWorkerEnv = "CLM_DIST_WORKER" // the case a child runs
	distTimeout   = 5 * time.Second   // the children's process-group timeout
	distKillCode  = 3                 // the exit status of the rank that dies
)

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runRanks runs TestDistWorker for workerCase in world child processes and
// returns each one's combined output and exit status.
func runRanks(t testing.TB, workerCase string, world int) (outs []string, codes []int) {
	t.Helper()
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type res struct {
		out  string
		code int
	}
	done := make([]chan res, world)
	for r := range world {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDistWorker$", "-test.v", "-test.count=1")
		env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
			for _, k := range []string{"RANK=", "LOCAL_RANK=", "WORLD_SIZE=", "MASTER_ADDR=", "MASTER_PORT=", "GLOO_SOCKET_IFNAME=", distWorkerEnv + "="} {
				if strings.HasPrefix(kv, k) {
					return true
				}
			}
			return false
		})
		cmd.Env = append(env, distWorkerEnv+"="+workerCase,
			fmt.Sprintf("RANK=%d", r), fmt.Sprintf("LOCAL_RANK=%d", r), fmt.Sprintf("WORLD_SIZE=%d", world),
			"MASTER_ADDR=127.0.0.1", fmt.Sprintf("MASTER_PORT=%d", port))
		done[r] = make(chan res, 1)
		go func(r int) {
			out, err := cmd.CombinedOutput()
			code := 0
			if err != nil {
				code = -1
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				}
				if code == -1 { // a signal: say which in the child's log
					out = fmt.Appendf(out, "\n[process ended: %v]", err)
				}
			}
			done[r] <- res{string(out), code}
		}(r)
	}
	for r := range world {
		x := <-done[r]
		outs = append(outs, x.out)
		codes = append(codes, x.code)
	}
	if ctx.Err() != nil {
		t.Errorf("%s: the children ran past 30 s and were killed", workerCase)
	}
	return outs, codes
}

// logChild shows the lines a child logged (its t.Logf output).
func logChild(t *testing.T, rank int, out string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		t.Logf("rank %d| %s", rank, line)
	}
}

func needGloo(t *testing.T) {
	if !slices.Contains(DistributedBackends(), "gloo") {
		t.Skipf("no gloo backend in this build (libtorch %s)", Version())
	}
}

// TestDistributed: AllReduce (sum, average), Broadcast and Barrier across two
// processes, then a rank that dies before a collective.
func TestDistributed(t *testing.T) {
	needGloo(t)
	t.Run("collectives", func(t *testing.T) {
		outs, codes := runRanks(t, "collectives", 2)
		for r := range outs {
			logChild(t, r, outs[r])
			if codes[r] != 0 {
				t.Errorf("rank %d exited with status %d", r, codes[r])
			}
		}
	})
	// Rank 1 exits (killed_peer) or stops responding (stalled_peer) before
	// an AllReduce; rank 0 gets an error, within the timeout, and goes on.
	for _, c := range []string{"killed", "stalled"} {
		t.Run(c+"_peer", func(t *testing.T) {
			outs, codes := runRanks(t, c, 2)
			for r := range outs {
				logChild(t, r, outs[r])
			}
			if codes[0] != 0 {
				t.Errorf("rank 0 exited with status %d, want 0 (an error value, not an abort)", codes[0])
			}
			if codes[1] != distKillCode {
				t.Errorf("rank 1 exited with status %d, want %d", codes[1], distKillCode)
			}
		})
	}
}

// BenchmarkAllReduce: a 50 MB float32 gradient bucket (12.5M values, in
// three tensors) summed across two local processes over Gloo on loopback.
// The children run b.N allreduces; rank 0 reports the time of one.
func BenchmarkAllReduce(b *testing.B) {
	if !slices.Contains(DistributedBackends(), "gloo") {
		b.Skip("no gloo backend in this build")
	}
	b.Setenv(distItersEnv, strconv.Itoa(b.N))
	outs, codes := runRanks(b, "bench", 2)
	for r := range outs {
		if codes[r] != 0 {
			b.Fatalf("rank %d exited with status %d:\n%s", r, codes[r], outs[r])
		}
	}
	for _, line := range strings.Split(outs[0], "\n") {
		if _, v, ok := strings.Cut(line, "BENCH ns/op="); ok {
			ns, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(ns, "ns/allreduce")
			b.ReportMetric(distBenchBytes/ns, "GB/s")
			b.ReportMetric(0, "ns/op")
			return
		}
	}
	b.Fatalf("no BENCH line from rank 0:\n%s", outs[0])
}

const (
	distItersEnv   = "CLM_DIST_ITERS"
	distBenchBytes = 50e6
)

func distBench(t *testing.T, pg *ProcessGroup) {
	iters, err := strconv.Atoi(os.Getenv(distItersEnv))
	if err != nil || iters < 1 {
		iters = 1
	}
	n := int64(distBenchBytes / 4)
	ts := []*Tensor{
		Full([]int64{n / 2}, 1, Float32, CPU),
		Full([]int64{n / 4, 1}, 1, Float32, CPU),
		Full([]int64{n - n/2 - n/4}, 1, Float32, CPU),
	}
	defer freeAll(ts)
	if err := pg.AllReduce(ts, ReduceOpAvg); err != nil { // warm-up
		t.Fatal(err)
	}
	start := time.Now()
	for range iters {
		if err := pg.AllReduce(ts, ReduceOpAvg); err != nil {
			t.Fatal(err)
		}
	}
	if pg.Rank() == 0 {
		fmt.Printf("BENCH ns/op=%d\n", time.Since(start).Nanoseconds()/int64(iters))
	}
}

// TestDistWorker is the body of one rank; it runs only in the children that
// TestDistributed starts.
func TestDistWorker(t *testing.T) {
	workerCase := os.Getenv(distWorkerEnv)
	if workerCase == "" {
		t.Skip("runs only as a child of TestDistributed")
	}
	live0 := LiveTensors()
	start := time.Now()
	pg, err := ProcessGroupFromEnv("gloo", distTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("joined as rank %d of %d (local rank %d) in %v", pg.Rank(), pg.Size(), pg.LocalRank(), time.Since(start).Round(time.Millisecond))
	switch workerCase {
	case "collectives":
		distCollectives(t, pg)
	case "killed":
		distKilled(t, pg, false)
	case "stalled":
		distKilled(t, pg, true)
	case "bench":
		distBench(t, pg)
	default:
		t.Fatalf("unknown case %q", workerCase)
	}
	if err := pg.Close(); err != nil {
		t.Error(err)
	}
	if n := LiveTensors(); n != live0 {
		t.Errorf("%d tensor handles leaked", n-live0)
	}
}

// distTensors returns rank r's inputs: tensors of several shapes and both
// float dtypes, one a non-contiguous view (with the base it views).
func distTensors(r int) (ts []*Tensor, base *Tensor) {
	s := NewScope()
	defer s.Close()
	f := float64(r + 1)                                                 // 1 on rank 0, 2 on rank 1
	a := Arange(0, 6, 1, Float32, CPU).Reshape(2, 3).ScaleInPlace(f)    // float32 [2,3]: f·i
	b := FromFloat64([]float64{f, f + 0.5, -f, 2}, 4)                   // float64 [4]
	c := Full([]int64{5, 1, 2}, f, Float32, CPU)                        // float32 [5,1,2]
	d := Scalar(7*f, Float64, CPU)                                      // float64 []
	base = Arange(0, 6, 1, Float32, CPU).Reshape(3, 2).ScaleInPlace(-f) // float32 [3,2]
	e := base.T()                                                       // [2,3] view, not contiguous
	ts = []*Tensor{a, b, c, d, e}
	s.Keep(append(ts, base)...)
	return ts, base
}

func freeAll(ts []*Tensor) {
	for _, t := range ts {
		t.Free()
	}
}

func distCollectives(t *testing.T, pg *ProcessGroup) {
	if pg.Size() != 2 {
		t.Fatalf("world size %d, want 2", pg.Size())
	}
	// Rank r holds f = r+1 times the f = 1 values (see distTensors), so sums
	// are 3·those and averages 1.5·, except b = [f, f+.5, -f, 2], which sums
	// to [3, 4, -3, 4] and averages to [1.5, 2, -1.5, 2].
	wantSum := [][]float64{
		{0, 3, 6, 9, 12, 15},
		{3, 4, -3, 4},
		{3, 3, 3, 3, 3, 3, 3, 3, 3, 3},
		{21},
		{0, -6, -12, -3, -9, -15},
	}
	wantAvg := [][]float64{
		{0, 1.5, 3, 4.5, 6, 7.5},
		{1.5, 2, -1.5, 2},
		{1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5},
		{10.5},
		{0, -3, -6, -1.5, -4.5, -7.5},
	}
	for _, c := range []struct {
		op   ReduceOp
		want [][]float64
	}{{ReduceOpSum, wantSum}, {ReduceOpAvg, wantAvg}} {
		ts, base := distTensors(pg.Rank())
		start := time.Now()
		if err := pg.AllReduce(ts, c.op); err != nil {
			t.Fatal(err)
		}
		t.Logf("allreduce %v of %d tensors (float32 and float64) in %v", c.op, len(ts), time.Since(start).Round(time.Microsecond))
		for i, x := range ts {
			got := distValues(x)
			if !slices.Equal(got, c.want[i]) {
				t.Errorf("allreduce %v: tensor %d (%v %v) = %v, want %v", c.op, i, x.DType(), x.Shape(), got, c.want[i])
			}
		}
		t.Logf("allreduce %v: %v", c.op, distAll(ts))
		freeAll(ts)
		base.Free()
	}

	// Broadcast from rank 0: rank 1's tensors become rank 0's.
	ts, base := distTensors(pg.Rank())
	if err := pg.Broadcast(ts, 0); err != nil {
		t.Fatal(err)
	}
	ref, refBase := distTensors(0)
	for i := range ts {
		if got, want := distValues(ts[i]), distValues(ref[i]); !slices.Equal(got, want) {
			t.Errorf("broadcast: tensor %d = %v, want rank 0's %v", i, got, want)
		}
	}
	t.Logf("broadcast from 0: %v", distAll(ts))
	freeAll(ts)
	freeAll(ref)
	base.Free()
	refBase.Free()

	// Barrier, and errors that leave the group usable.
	start := time.Now()
	if err := pg.Barrier(); err != nil {
		t.Fatal(err)
	}
	t.Logf("barrier in %v", time.Since(start).Round(time.Microsecond))
}

func distValues(x *Tensor) []float64 {
	s := NewScope()
	defer s.Close()
	return x.Contiguous().Reshape(-1).To(Float64, CPU).Float64s()
}

func distAll(ts []*Tensor) string {
	var b strings.Builder
	for i, x := range ts {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%v%v=%v", x.DType(), x.Shape(), distValues(x))
	}
	return b.String()
}

// distKilled: rank 1 joins, then exits before the collective; rank 0's
// AllReduce must fail within the timeout (plus slack), and rank 0 goes on.
func distKilled(t *testing.T, pg *ProcessGroup, stall bool) {
	// Both ranks are fully connected before rank 1 leaves.
	if err := pg.Barrier(); err != nil {
		t.Fatal(err)
	}
	if pg.Rank() == 1 {
		if stall {
			// Alive but absent: rank 0 waits for the timeout.
			time.Sleep(distTimeout + 3*time.Second)
		}
		os.Exit(distKillCode)
	}
	x := Full([]int64{1 << 16}, 1, Float32, CPU)
	y := Full([]int64{3}, 1, Float64, CPU)
	defer x.Free()
	defer y.Free()
	start := time.Now()
	err := pg.AllReduce([]*Tensor{x, y}, ReduceOpSum)
	elapsed := time.Since(start)
	t.Logf("allreduce with a lost peer: after %v: %v", elapsed.Round(time.Millisecond), err)
	if err == nil {
		t.Fatal("allreduce with a lost peer succeeded")
	}
	if limit := distTimeout + 5*time.Second; elapsed > limit {
		t.Errorf("the error took %v, more than %v", elapsed, limit)
	}
	if stall && elapsed < distTimeout-time.Second {
		t.Errorf("the error came after %v, before the %v timeout", elapsed, distTimeout)
	}
	// The process goes on: ops work, and the broken group keeps failing
	// without waiting.
	if v := distValues(x)[0]; v != 1 {
		t.Errorf("sum = %g after the failure", v)
	}
	start = time.Now()
	err = pg.Barrier()
	t.Logf("barrier afterwards: after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if err == nil {
		t.Error("barrier on a broken group succeeded")
	}
}

// TestProcessGroupEnv: torchrun's variables, missing or invalid, give errors
// that name them; bad options are refused before any network use.
func TestProcessGroupEnv(t *testing.T) {
	set := func(kv map[string]string) {
		for _, k := range []string{"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"} {
			t.Setenv(k, kv[k])
		}
	}
	good := map[string]string{"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511"}
	set(good)
	o, err := ProcessGroupOptionsFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if o.Rank != 1 || o.WorldSize != 2 || o.LocalRank != 1 || o.MasterAddr != "127.0.0.1" || o.MasterPort != 29511 {
		t.Errorf("options %+v", o)
	}
	for _, c := range []struct {
		key, value string // "" value: unset
		want       string // in the error
	}{
		{"RANK", "", "RANK is not set"},
		{"WORLD_SIZE", "", "WORLD_SIZE is not set"},
		{"MASTER_ADDR", "", "MASTER_ADDR is not set"},
		{"MASTER_PORT", "", "MASTER_PORT is not set"},
		{"RANK", "two", `RANK="two"`},
		{"RANK", "2", `RANK="2" is not an integer in [0, 1]`},
		{"WORLD_SIZE", "0", `WORLD_SIZE="0"`},
		{"LOCAL_RANK", "-1", `LOCAL_RANK="-1"`},
		{"MASTER_PORT", "70000", `MASTER_PORT="70000"`},
	} {
		kv := maps.Clone(good)
		kv[c.key] = c.value
		set(kv)
		_, err := ProcessGroupFromEnv("gloo", time.Second)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s=%q: error %v, want one containing %q", c.key, c.value, err, c.want)
		} else {
			t.Logf("%s=%q: %v", c.key, c.value, err)
		}
	}
	for _, o := range []ProcessGroupOptions{
		{Rank: 0, WorldSize: 0, MasterAddr: "127.0.0.1", MasterPort: 1},
		{Rank: 2, WorldSize: 2, MasterAddr: "127.0.0.1", MasterPort: 1},
		{Rank: 0, WorldSize: 1, MasterAddr: "", MasterPort: 1},
		{Rank: 0, WorldSize: 1, MasterAddr: "127.0.0.1", MasterPort: 0},
	} {
		if _, err := NewProcessGroup(o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

// TestProcessGroupCapabilities: every build offers gloo, and an unknown
// backend is refused.
func TestProcessGroupCapabilities(t *testing.T) {
	backends := DistributedBackends()
	t.Logf("libtorch %s: distributed backends %v", Version(), backends)
	if !slices.Contains(backends, "gloo") {
		t.Errorf("no gloo backend on libtorch %s", Version())
	}
	if _, err := NewProcessGroup(ProcessGroupOptions{WorldSize: 1, MasterAddr: "127.0.0.1", MasterPort: 1, Backend: "mpi"}); err == nil ||
		!strings.Contains(err.Error(), "unknown backend") {
		t.Errorf("backend mpi: error %v", err)
	}
}

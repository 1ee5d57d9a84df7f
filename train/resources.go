package train

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"clm/model"
	"clm/torch"
)

// Bytes per parameter that training holds: fp32 weights and gradients and
// AdamW's two fp32 moments for a trainable one; the weights alone for a
// frozen one or a buffer.
const (
	bytesTrainable = 4 + 4 + 8
	bytesFrozen    = 4
)

// CheckMemory refuses, before anything is allocated, a model whose
// parameters and optimizer state cannot fit the device's memory (the
// memory the system reports available on a CPU, the free memory of a GPU),
// with the estimate in the message. Activations come on top, so passing
// is necessary, not sufficient.
func CheckMemory(e *Experiment, dev torch.Device) error {
	need, params := stateMemory(e.Model)
	avail, where := availableMemory(dev)
	if avail <= 0 || need <= float64(avail) {
		return nil
	}
	m := e.Model
	return fmt.Errorf("model: %.3g parameters (n_layer %d, n_embd %d, vocab_size %d) need about %s for weights, gradients and AdamW state, more than the %s %s; make it smaller",
		params, m.NLayer, m.NEmbd, m.VocabSize, human(need), human(float64(avail)), where)
}

// stateMemory is the bytes a model's weights, gradients and AdamW state
// take (activations come on top), and its parameters and buffers.
func stateMemory(c model.Config) (bytes, params float64) {
	tr, fr := c.Footprint()
	return tr*bytesTrainable + fr*bytesFrozen, tr + fr
}

// availableMemory is the memory a new model could use on dev (0: unknown).
func availableMemory(dev torch.Device) (int64, string) {
	if dev.IsCUDA() {
		free, _, _, err := torch.CUDAMemInfo(dev)
		if err != nil {
			return 0, ""
		}
		return free, "free on " + dev.String()
	}
	if kb := procKB("/proc/meminfo", "MemAvailable:"); kb > 0 {
		return kb << 10, "available in main memory"
	}
	return 0, ""
}

// human writes a byte count in GB (or MB).
func human(b float64) string {
	if b < 1e9 {
		return fmt.Sprintf("%.0f MB", b/1e6)
	}
	return fmt.Sprintf("%.3g GB", b/1e9)
}

// peakMeter measures the peak memory of a log window: on a CPU the
// process's peak resident set (VmHWM, which writing 5 to
// /proc/self/clear_refs resets to the current resident set), on a GPU the
// caching allocator's peak (reset with torch.ResetCUDAPeak). Where the
// kernel refuses the reset, the CPU peak is the process's since it began.
type peakMeter struct {
	dev torch.Device
}

// reset starts a new window.
func (m peakMeter) reset() {
	if m.dev.IsCUDA() {
		_ = torch.ResetCUDAPeak(m.dev) // a failure leaves the peak since the last reset
		return
	}
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) // best effort, see above
}

// peak returns the window's peak in bytes (0: unknown).
func (m peakMeter) peak() int64 {
	if m.dev.IsCUDA() {
		_, peak, err := torch.CUDAMemory(m.dev)
		if err != nil {
			return 0
		}
		return peak
	}
	return procKB("/proc/self/status", "VmHWM:") << 10
}

// procKB reads a "kB" field of a /proc file such as /proc/meminfo or
// /proc/self/status (0: absent).
func procKB(file, field string) int64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err == nil {
				return kb
			}
		}
	}
	return 0
}

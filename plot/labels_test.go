package plot

import (
	"reflect"
	"testing"
)

func TestUniqueLabels(t *testing.T) {
	cases := []struct {
		name   string
		runs   map[string]string // folder -> label
		order  []string
		labels []string
	}{
		{"distinct labels stay", map[string]string{"/r/a": "default", "/r/b": "skipless"}, []string{"/r/a", "/r/b"}, []string{"default", "skipless"}},
		{"same experiment, other folders", map[string]string{"/r/a": "tiny", "/r/b": "tiny"}, []string{"/r/a", "/r/b"}, []string{"tiny (a)", "tiny (b)"}},
		{"same folder name under seeds", map[string]string{"/r/seedA/run": "tiny", "/r/seedB/run": "tiny", "/r/x": "op"},
			[]string{"/r/seedA/run", "/r/seedB/run", "/r/x"}, []string{"tiny (seedA/run)", "tiny (seedB/run)", "op"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var runs []*Run
			for _, d := range c.order {
				runs = append(runs, &Run{Dir: d, Label: c.runs[d]})
			}
			uniqueLabels(runs)
			var got []string
			for _, r := range runs {
				got = append(got, r.Label)
			}
			if !reflect.DeepEqual(got, c.labels) {
				t.Fatalf("labels %q, want %q", got, c.labels)
			}
		})
	}
}

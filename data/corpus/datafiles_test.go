package corpus

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"clm/internal/testkit/pyref"
)

// TestDataFilesTablesMatchDatasets keeps the tables copied from datasets
// equal to the installed library's.
func TestDataFilesTablesMatchDatasets(t *testing.T) {
	var ref struct {
		Allowed            []string            `json:"allowed"`
		MetadataFiles      []string            `json:"metadata_files"`
		MetadataExtensions []string            `json:"metadata_extensions"`
		JSON               []string            `json:"json"`
		Parquet            []string            `json:"parquet"`
		Ignore             []string            `json:"ignore"`
		Sharded            string              `json:"sharded"`
		Keywords           map[string][]string `json:"keywords"`
		InDir              []string            `json:"in_dir"`
		InName             []string            `json:"in_name"`
		Sep                string              `json:"sep"`
	}
	if err := json.Unmarshal(pyref.Run(t, "datasets_tables.py"), &ref); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"allowed extensions", allowedExtensions, ref.Allowed},
		{"metadata file names", metadataFileNames, ref.MetadataFiles},
		{"metadata extensions", metadataExtensions, ref.MetadataExtensions},
		{"json extensions", moduleExtensions["json"], ref.JSON},
		{"parquet extensions", moduleExtensions["parquet"], ref.Parquet},
		{"files to ignore", filesToIgnore, ref.Ignore},
		{"sharded pattern", shardedPattern, ref.Sharded},
		{"split-in-folder patterns", keywordsInDir, ref.InDir},
		{"split-in-name patterns", keywordsInName, ref.InName},
		{"separators", nonWordChars, ref.Sep},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: clm has %v, datasets %v", c.name, c.got, c.want)
		}
	}
	for _, sk := range splitKeywords {
		if !reflect.DeepEqual(sk.keywords, ref.Keywords[sk.split]) {
			t.Errorf("split %s keywords: clm %v, datasets %v", sk.split, sk.keywords, ref.Keywords[sk.split])
		}
	}
}

func TestDataFilesErrors(t *testing.T) {
	cases := []struct {
		name   string
		files  []string
		readme string
		split  string
		want   string
	}{
		{"csv data", []string{"data/train-00000-of-00001.csv"}, "", "train", "split train is csv data"},
		{"no such split", []string{"data/train-00000-of-00001.parquet"}, "", "validation", `no split "validation" (splits: train)`},
		{"no data files", []string{"README.md", "LICENSE", "build.py"}, "", "train", "no data files"},
		{"mixed formats", []string{"train.parquet", "valid.jsonl"}, "", "train", "different formats"},
		{"zip archive", []string{"train.zip"}, "", "train", "split train is zip data"},
		{"zip among json", []string{"train.jsonl", "train-2.jsonl", "train-3.zip"}, "", "train", "holds a zip archive"},
		{"several default configs", []string{"a.jsonl"}, "---\nconfigs:\n- config_name: default\n  data_files: a.jsonl\n- config_name: b\n  default: true\n  data_files: a.jsonl\n---\n", "train", "several default configs"},
		{"no default config", []string{"a.jsonl"}, "---\nconfigs:\n- config_name: x\n  data_files: a.jsonl\n- config_name: y\n  data_files: a.jsonl\n---\n", "train", "none is the default"},
		{"missing explicit file", []string{"a.jsonl"}, "---\nconfigs:\n- config_name: default\n  data_files: b.jsonl\n---\n", "train", `no file "b.jsonl"`},
		{"bad yaml", []string{"a.jsonl"}, "---\nconfigs: [\n---\n", "train", "README.md metadata"},
		{"bad split name", []string{"data/tr ain-00000-of-00001.parquet"}, "", "train", "split name should match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := DataFiles(tc.files, []byte(tc.readme), tc.split)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestGlob(t *testing.T) {
	cases := []struct {
		pattern, path string
		match         bool
	}{
		{"**", "a/b/c.parquet", true},
		{"**/train[-._ 0-9]*", "train.jsonl", true},
		{"**/train[-._ 0-9]*", "x/y/train-0.jsonl", true},
		{"**/train[-._ 0-9]*", "x/mytrain.jsonl", false},
		{"**/*[-._ 0-9]train[-._ 0-9]*", "x/my_train.jsonl", true},
		{"**/train/**", "train/a.parquet", true},
		{"**/train/**", "x/train/sub/a.parquet", true},
		{"**/train/**", "training/a.parquet", false},
		{"data/*.parquet", "data/sub/a.parquet", false},
		{"data/?.parquet", "data/a.parquet", true},
		{"data/[!a]*", "data/b.json", true},
		{"data/[!a]*", "data/a.json", false},
		{"a.b", "aXb", false},
	}
	for _, tc := range cases {
		if got := globRE(tc.pattern).MatchString(tc.path); got != tc.match {
			t.Errorf("%q ~ %q: %v, want %v", tc.pattern, tc.path, got, tc.match)
		}
	}
}

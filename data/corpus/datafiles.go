package corpus

import (
	"bytes"
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// This file resolves which files of a Hub dataset repository make up a
// split, and in which order, as `datasets.load_dataset(repo, split=...)`
// does (datasets 5.x, data_files.py and load.py): the default config of the
// dataset card's `configs:` if any, else the first of datasets' default
// patterns that matches (data/{split}-NNNNN-of-NNNNN*.*, split names in
// folders, split names in file names, then every file as "train"); each
// pattern's matches sorted, patterns in order; the data format inferred
// from the most common extension. The tests compare it with datasets itself.

// splitKeywords are datasets' SPLIT_KEYWORDS, in DEFAULT_SPLITS order.
var splitKeywords = []struct {
	split    string
	keywords []string
}{
	{"train", []string{"train", "training"}},
	{"validation", []string{"validation", "valid", "dev", "val"}},
	{"test", []string{"test", "testing", "eval", "evaluation"}},
}

const (
	shardedPattern = "data/{split}-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]*.*"
	nonWordChars   = "-._ 0-9"
)

// keywordsInDir and keywordsInName are datasets' KEYWORDS_IN_DIR_NAME_ and
// KEYWORDS_IN_FILENAME_BASE_PATTERNS (for fsspec ≥ 2023.12).
var (
	keywordsInDir  = []string{"**/{keyword}/**", "**/{keyword}[{sep}]*/**", "**/*[{sep}]{keyword}/**", "**/*[{sep}]{keyword}[{sep}]*/**"}
	keywordsInName = []string{"**/{keyword}[{sep}]*", "**/*[{sep}]{keyword}[{sep}]*"}
)

// defaultPatternSets are datasets' ALL_DEFAULT_PATTERNS, each an ordered
// list of (split, patterns).
func defaultPatternSets() [][]splitPatterns {
	expand := func(bases []string) []splitPatterns {
		var out []splitPatterns
		for _, sk := range splitKeywords {
			sp := splitPatterns{split: sk.split}
			for _, k := range sk.keywords {
				for _, b := range bases {
					sp.patterns = append(sp.patterns, strings.NewReplacer("{keyword}", k, "{sep}", nonWordChars).Replace(b))
				}
			}
			out = append(out, sp)
		}
		return out
	}
	return [][]splitPatterns{
		{{"logs", []string{"**/*.eval"}}},
		{{"test", []string{"**/task.toml", "**/instruction.md"}}},
		expand(keywordsInDir),
		expand(keywordsInName),
		{{"train", []string{"**"}}},
	}
}

type splitPatterns struct {
	split    string
	patterns []string
}

// filesToIgnore are datasets' FILES_TO_IGNORE (by base name).
var filesToIgnore = []string{"README.md", "config.json", "dataset_info.json", "dataset_infos.json", "dummy_data.zip", "dataset_dict.json"}

// metadataFileNames are datasets' _ALL_METADATA_FILENAMES.
var metadataFileNames = []string{"instruction.md", "latest_version_hint.json", "metadata.csv", "metadata.jsonl", "metadata.parquet", "task.toml"}

// metadataExtensions are datasets' _ALL_METADATA_EXTENSIONS.
var metadataExtensions = []string{".idx", ".manifest", ".txn"}

// allowedExtensions are datasets' _ALL_ALLOWED_EXTENSIONS: the data file
// extensions of every packaged builder, plus .zip and the metadata ones.
var allowedExtensions = strings.Fields(`.csv .tsv .json .jsonl .ndjson .parquet .geoparquet .gpq .arrow .txt
.conll .conllu .tar .xml .hdf5 .h5 .eval .toml .md .lance .tsfile .vortex .fa .fasta .fna .ffn .faa .frn .afa
.gb .gbk .genbank .fq .fastq .pdb .ent .cif .mmcif .PDB .ENT .blp .bmp .dib .bufr .cur .pcx .dcx .dds .ps .eps
.fit .fits .fli .flc .ftc .ftu .gbr .gif .grib .png .apng .jp2 .j2k .jpc .jpf .jpx .j2c .icns .ico .im .iim .tif
.tiff .jfif .jpe .jpg .jpeg .mpg .mpeg .msp .pcd .pxr .pbm .pgm .ppm .pnm .psd .bw .rgb .rgba .sgi .ras .tga .icb
.vda .vst .webp .wmf .emf .xbm .xpm .BLP .BMP .DIB .BUFR .CUR .PCX .DCX .DDS .PS .EPS .FIT .FITS .FLI .FLC .FTC
.FTU .GBR .GIF .GRIB .PNG .APNG .JP2 .J2K .JPC .JPF .JPX .J2C .ICNS .ICO .IM .IIM .TIF .TIFF .JFIF .JPE .JPG .JPEG
.MPG .MPEG .MSP .PCD .PXR .PBM .PGM .PPM .PNM .PSD .BW .RGB .RGBA .SGI .RAS .TGA .ICB .VDA .VST .WEBP .WMF .EMF
.XBM .XPM .aiff .au .avr .caf .flac .htk .svx .mat4 .mat5 .mpc2k .ogg .paf .pvf .raw .rf64 .sd2 .sds .ircam .voc
.w64 .wav .nist .wavex .wve .xi .mp3 .opus .3gp .3g2 .avi .asf .flv .mp4 .mov .m4v .mkv .webm .f4v .wmv .wma .ogm
.mxf .nut .AIFF .AU .AVR .CAF .FLAC .HTK .SVX .MAT4 .MAT5 .MPC2K .OGG .PAF .PVF .RAW .RF64 .SD2 .SDS .IRCAM .VOC
.W64 .WAV .NIST .WAVEX .WVE .XI .MP3 .OPUS .3GP .3G2 .AVI .ASF .FLV .MP4 .MOV .M4V .MKV .WEBM .F4V .WMV .WMA .OGM
.MXF .NUT .glb .gltf .ply .stl .GLB .GLTF .PLY .STL .pdf .PDF .nii .NII .zip .idx .manifest .txn`)

// moduleExtensions are the extensions of the builders clm can read
// (datasets' _MODULE_TO_EXTENSIONS, without .zip).
var moduleExtensions = map[string][]string{
	"json":    {".json", ".jsonl", ".ndjson"},
	"parquet": {".parquet", ".geoparquet", ".gpq"},
}

// globRE translates an fsspec (≥ 2023.12) glob to a regexp over '/'-paths:
// '*' and '?' stay within a component, "**" as a whole component spans any
// number of components (none included), [...] is a character class.
func globRE(pattern string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	comps := strings.Split(pattern, "/")
	for i, c := range comps {
		last := i == len(comps)-1
		if c == "**" {
			if last {
				b.WriteString(".*")
			} else {
				b.WriteString("(?:.*/)?")
			}
			continue
		}
		for j := 0; j < len(c); j++ {
			switch ch := c[j]; ch {
			case '*':
				b.WriteString("[^/]*")
			case '?':
				b.WriteString("[^/]")
			case '[':
				end := strings.IndexByte(c[j+1:], ']')
				if end < 0 {
					b.WriteString(`\[`)
					continue
				}
				class := c[j+1 : j+1+end]
				if strings.HasPrefix(class, "!") {
					class = "^" + class[1:]
				}
				b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
				j += end + 1
			default:
				b.WriteString(regexp.QuoteMeta(string(ch)))
			}
		}
		if !last {
			b.WriteString("/")
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// hiddenParts counts the components starting with '.' (not all dots).
func hiddenParts(parts []string) int {
	n := 0
	for _, p := range parts {
		if strings.HasPrefix(p, ".") && strings.Trim(p, ".") != "" {
			n++
		}
	}
	return n
}

// specialDirs counts the parent components starting with "__".
func specialDirs(parts []string) int {
	n := 0
	for _, p := range parts[:max(len(parts)-1, 0)] {
		if strings.HasPrefix(p, "__") {
			n++
		}
	}
	return n
}

// resolvePattern is datasets' resolve_pattern over a repository listing:
// the sorted matches, minus ignored, hidden and special-folder files and
// files without an allowed extension.
func resolvePattern(pattern string, files []string) []string {
	re := globRE(pattern)
	pparts := strings.Split(pattern, "/")
	base := path.Base(pattern)
	var out []string
	for _, f := range files {
		if !re.MatchString(f) {
			continue
		}
		parts := strings.Split(f, "/")
		name := parts[len(parts)-1]
		if slices.Contains(filesToIgnore, name) && name != base {
			continue
		}
		if specialDirs(parts) != specialDirs(pparts) || hiddenParts(parts) != hiddenParts(pparts) {
			continue
		}
		ok := false
		for _, suf := range strings.Split(name, ".")[1:] {
			if slices.Contains(allowedExtensions, "."+suf) {
				ok = true
				break
			}
		}
		if ok {
			out = append(out, f)
		}
	}
	return out
}

// hasMagic reports whether a pattern has glob characters.
func hasMagic(p string) bool { return strings.ContainsAny(p, "*?[") }

// inferModule is datasets' infer_module_for_data_files_list: the builder
// of the most common extension (ties: parquet, lance, vortex, arrow, jsonl,
// json, csv, then by name; metadata files last).
func inferModule(files []string) string {
	type key struct {
		ext  string
		meta bool
	}
	counts := map[key]int{}
	for _, f := range files {
		name := path.Base(f)
		for _, suf := range strings.Split(name, ".")[1:] {
			counts[key{"." + strings.ToLower(suf), slices.Contains(metadataFileNames, name)}]++
		}
	}
	keys := make([]key, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	rank := func(k key) []int {
		r := []int{b2i(!k.meta), counts[k]}
		for _, e := range []string{".parquet", ".lance", ".vortex", ".arrow", ".jsonl", ".json", ".csv"} {
			r = append(r, b2i(k.ext == e))
		}
		return r
	}
	sort.Slice(keys, func(i, j int) bool {
		ri, rj := rank(keys[i]), rank(keys[j])
		for n := range ri {
			if ri[n] != rj[n] {
				return ri[n] > rj[n]
			}
		}
		return keys[i].ext > keys[j].ext
	})
	for _, k := range keys {
		if k.ext == ".zip" {
			return "zip"
		}
		for m, exts := range moduleExtensions {
			if slices.Contains(exts, k.ext) {
				return m
			}
		}
		if slices.Contains(allowedExtensions, k.ext) && !slices.Contains(metadataExtensions, k.ext) {
			return strings.TrimPrefix(k.ext, ".") // a builder clm does not read
		}
	}
	return ""
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// shardedSplits finds the splits of the data/{split}-NNNNN-of-NNNNN*.*
// layout (push_to_hub's), in datasets' order.
func shardedSplits(files []string) ([]splitPatterns, error) {
	matches := resolvePattern(strings.ReplaceAll(shardedPattern, "{split}", "*"), files)
	if len(matches) == 0 {
		return nil, nil
	}
	re := regexp.MustCompile("(.+)-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]*.*")
	splitRE := regexp.MustCompile(`^\w+(\.\w+)*$`)
	seen := map[string]bool{}
	for _, m := range matches {
		sm := re.FindStringSubmatch(path.Base(m))
		if sm == nil {
			continue
		}
		if !splitRE.MatchString(sm[1]) {
			return nil, fmt.Errorf("split name should match '^\\w+(\\.\\w+)*$' but got %q", sm[1])
		}
		seen[sm[1]] = true
	}
	var order []string
	for _, sk := range splitKeywords {
		if seen[sk.split] {
			order = append(order, sk.split)
			delete(seen, sk.split)
		}
	}
	var rest []string
	for s := range seen {
		rest = append(rest, s)
	}
	sort.Strings(rest)
	var out []splitPatterns
	for _, s := range append(order, rest...) {
		out = append(out, splitPatterns{s, []string{strings.ReplaceAll(shardedPattern, "{split}", s)}})
	}
	return out, nil
}

// defaultPatterns is datasets' get_data_patterns over a listing.
func defaultPatterns(files []string) ([]splitPatterns, error) {
	if sp, err := shardedSplits(files); sp != nil || err != nil {
		return sp, err
	}
	for _, set := range defaultPatternSets() {
		var found []splitPatterns
		for _, sp := range set {
			for _, p := range sp.patterns {
				if len(resolvePattern(p, files)) > 0 {
					found = append(found, sp)
					break
				}
			}
		}
		if len(found) > 0 {
			return found, nil
		}
	}
	return nil, fmt.Errorf("no data files (parquet, json, ...) in the repository")
}

// cardConfig is one entry of the dataset card's `configs:` list.
type cardConfig struct {
	Name      string    `yaml:"config_name"`
	DataFiles yaml.Node `yaml:"data_files"`
	DataDir   string    `yaml:"data_dir"`
	Default   bool      `yaml:"default"`
}

// cardConfigs reads the YAML front matter of a README.md.
func cardConfigs(readme []byte) ([]cardConfig, error) {
	text := strings.ReplaceAll(string(readme), "\r\n", "\n")
	if !strings.HasPrefix(text, "---\n") {
		return nil, nil
	}
	end := strings.Index(text[4:], "\n---")
	if end < 0 {
		return nil, nil
	}
	var card struct {
		Configs []cardConfig `yaml:"configs"`
	}
	if err := yaml.NewDecoder(bytes.NewReader([]byte(text[4 : 4+end]))).Decode(&card); err != nil {
		return nil, fmt.Errorf("README.md metadata: %v", err)
	}
	return card.Configs, nil
}

// configPatterns is datasets' sanitize_patterns of a config's data_files.
func configPatterns(c cardConfig) ([]splitPatterns, error) {
	n := &c.DataFiles
	strs := func(n *yaml.Node) ([]string, error) {
		if n.Kind == yaml.ScalarNode {
			return []string{n.Value}, nil
		}
		var out []string
		err := n.Decode(&out)
		return out, err
	}
	var out []splitPatterns
	switch {
	case n.Kind == 0:
		return nil, nil
	case n.Kind == yaml.ScalarNode || (n.Kind == yaml.SequenceNode && len(n.Content) > 0 && n.Content[0].Kind == yaml.ScalarNode):
		p, err := strs(n)
		if err != nil {
			return nil, err
		}
		out = append(out, splitPatterns{"train", p})
	case n.Kind == yaml.SequenceNode:
		for _, item := range n.Content {
			var e struct {
				Split string    `yaml:"split"`
				Path  yaml.Node `yaml:"path"`
			}
			if err := item.Decode(&e); err != nil || e.Split == "" {
				return nil, fmt.Errorf("config %q: each data_files entry needs a split and a path", c.Name)
			}
			p, err := strs(&e.Path)
			if err != nil {
				return nil, err
			}
			out = append(out, splitPatterns{e.Split, p})
		}
	case n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p, err := strs(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			out = append(out, splitPatterns{n.Content[i].Value, p})
		}
	}
	if c.DataDir != "" {
		for i := range out {
			for j, p := range out[i].patterns {
				out[i].patterns[j] = strings.Trim(c.DataDir, "/") + "/" + p
			}
		}
	}
	return out, nil
}

// defaultConfig picks the config load_dataset uses without a config name.
func defaultConfig(cs []cardConfig) (cardConfig, error) {
	var pick *cardConfig
	for i, c := range cs {
		if len(cs) == 1 || c.Name == "default" || c.Default {
			if pick != nil {
				return cardConfig{}, fmt.Errorf("the dataset card has several default configs: %q and %q", pick.Name, c.Name)
			}
			pick = &cs[i]
		}
	}
	if pick == nil {
		var names []string
		for _, c := range cs {
			names = append(names, c.Name)
		}
		return cardConfig{}, fmt.Errorf("the dataset card has several configs (%s) and none is the default", strings.Join(names, ", "))
	}
	return *pick, nil
}

// DataFiles returns the files of a split of a Hub dataset repository in the
// order `datasets.load_dataset(repo, split=split)` reads them, and the
// builder that reads them ("parquet" or "json"; others are refused). files
// lists every file of the commit ('/'-separated paths); readme is its
// README.md (nil if none).
func DataFiles(files []string, readme []byte, split string) ([]string, string, error) {
	files = append([]string(nil), files...)
	sort.Strings(files)
	configs, err := cardConfigs(readme)
	if err != nil {
		return nil, "", err
	}
	var patterns []splitPatterns
	if len(configs) > 0 {
		c, err := defaultConfig(configs)
		if err != nil {
			return nil, "", err
		}
		if patterns, err = configPatterns(c); err != nil {
			return nil, "", err
		}
	}
	if patterns == nil {
		if patterns, err = defaultPatterns(files); err != nil {
			return nil, "", err
		}
	}
	resolved := map[string][]string{}
	var names []string
	for _, sp := range patterns {
		var got []string
		for _, p := range sp.patterns {
			m := resolvePattern(p, files)
			if len(m) == 0 && !hasMagic(p) {
				return nil, "", fmt.Errorf("split %s: no file %q", sp.split, p)
			}
			got = append(got, m...)
		}
		resolved[sp.split] = got
		names = append(names, sp.split)
	}
	module := ""
	for i, n := range names {
		m := inferModule(resolved[n])
		if i == 0 {
			module = m
		} else if m != module {
			return nil, "", fmt.Errorf("the splits hold different formats (%s: %s, %s: %s)", names[0], module, n, m)
		}
	}
	got, ok := resolved[split]
	if !ok {
		return nil, "", fmt.Errorf("no split %q (splits: %s)", split, strings.Join(names, ", "))
	}
	exts, ok := moduleExtensions[module]
	if !ok {
		return nil, "", fmt.Errorf("split %s is %s data; clm reads parquet and json/jsonl files", split, orNone(module))
	}
	// datasets' DataFilesList.filter: the builder's extensions (and .zip).
	var alt []string
	for _, e := range append(exts, ".zip") {
		alt = append(alt, regexp.QuoteMeta(e))
	}
	keep := regexp.MustCompile(`^.*(` + strings.Join(alt, "|") + `)(\..+)?$`)
	var out []string
	for _, f := range got {
		if keep.MatchString(f) {
			if strings.HasSuffix(strings.ToLower(f), ".zip") {
				return nil, "", fmt.Errorf("split %s holds a zip archive (%s); clm reads parquet and json/jsonl files", split, f)
			}
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, "", fmt.Errorf("split %s has no %s file", split, module)
	}
	return out, module, nil
}

func orNone(s string) string {
	if s == "" {
		return "no recognised"
	}
	return s
}

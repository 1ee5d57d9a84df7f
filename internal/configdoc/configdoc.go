// Package configdoc renders the reference tables of docs/configuration.md
// from the code: one row per TOML key of a configuration struct, with its
// default and the field's doc comment, so that the page says what the
// comments say and cannot drift from them (cmd/configdoc writes the page,
// and its test fails when the page is stale).
package configdoc

import (
	"encoding"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Table renders the Markdown table of the struct type typeName declared in
// the Go package in dir: one row per field with a TOML key, its default
// read from defaults (a value of that type), and its meaning taken from the
// field's doc comment. Fields of struct type are left out (they are tables
// of their own); a field with a key but no comment is an error.
func Table(dir, typeName string, defaults any) (string, error) {
	st, err := findStruct(dir, typeName)
	if err != nil {
		return "", err
	}
	v := reflect.ValueOf(defaults)
	if v.Kind() != reflect.Struct || v.Type().Name() != typeName {
		return "", fmt.Errorf("configdoc: defaults are a %s, not a %s", v.Type(), typeName)
	}
	var b strings.Builder
	b.WriteString("| key | default | meaning |\n| --- | --- | --- |\n")
	for _, f := range st.Fields.List {
		for _, name := range f.Names {
			row, err := fieldRow(v, typeName, name.Name, f)
			if err != nil {
				return "", err
			}
			b.WriteString(row)
		}
	}
	return b.String(), nil
}

// fieldRow is the table row of one field, or "" for a field without a key.
func fieldRow(v reflect.Value, typeName, name string, f *ast.Field) (string, error) {
	sf, ok := v.Type().FieldByName(name)
	if !ok {
		return "", fmt.Errorf("configdoc: %s.%s is in the source but not in the compiled type", typeName, name)
	}
	key, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
	if key == "" || key == "-" || sf.Type.Kind() == reflect.Struct {
		return "", nil
	}
	doc := f.Doc.Text()
	if doc == "" {
		doc = f.Comment.Text()
	}
	if strings.TrimSpace(doc) == "" {
		return "", fmt.Errorf("configdoc: %s.%s (key %s) has no doc comment", typeName, name, key)
	}
	return fmt.Sprintf("| `%s` | %s | %s |\n", key, Value(v.FieldByName(name)), Meaning(name, doc)), nil
}

// findStruct parses the non-test Go files of dir and returns the struct
// type typeName.
func findStruct(dir, typeName string) (*ast.StructType, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("configdoc: %w", err)
		}
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("configdoc: %w", err)
		}
		var found *ast.StructType
		ast.Inspect(f, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok && ts.Name.Name == typeName {
				found, _ = ts.Type.(*ast.StructType)
			}
			return found == nil
		})
		if found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("configdoc: no struct type %s in %s", typeName, dir)
}

// Meaning turns a field's doc comment into the table's sentence: one line,
// without the leading field name (and its "is" or "are"), capitalised, and
// with the table's column separator escaped. "NEmbd is the width d." gives
// "The width d.", "CUDAGraphs, on a GPU, captures …" "On a GPU, captures …";
// a line comment such as "steps between log lines (500)"
// is kept as it is.
func Meaning(field, doc string) string {
	s := strings.Join(strings.Fields(doc), " ")
	if rest, ok := strings.CutPrefix(s, field+", "); ok {
		s = rest
	} else if rest, ok := strings.CutPrefix(s, field+" "); ok {
		s = strings.TrimPrefix(strings.TrimPrefix(rest, "is "), "are ")
	}
	if r, size := utf8.DecodeRuneInString(s); r != utf8.RuneError {
		s = string(unicode.ToUpper(r)) + s[size:]
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

// Value is a default as the table shows it: strings quoted, floats in Go's
// shortest form (1e-05, 0.1), a nil pointer as null, lists as TOML arrays;
// a type that marshals itself as JSON or text is shown so (a TieValProj's
// "" is null, an AttentionImpl is its name).
func Value(v reflect.Value) string {
	switch m := v.Interface().(type) {
	case json.Marshaler:
		if b, err := m.MarshalJSON(); err == nil {
			return string(b)
		}
	case encoding.TextMarshaler:
		if b, err := m.MarshalText(); err == nil {
			return strconv.Quote(string(b))
		}
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return "null"
		}
		return Value(v.Elem())
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Float32, reflect.Float64:
		s := strconv.FormatFloat(v.Float(), 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return s
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = Value(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

package corpus

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// readParquet streams one column of a parquet file, row group by row group
// and page by page, so memory stays bounded by a page.
func readParquet(path, column string, fn func(int64, []byte, bool) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if st.Size() == 0 {
		return fmt.Errorf("%s: empty file", path)
	}
	pf, err := parquet.OpenFile(f, st.Size(), parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
	if err != nil {
		return fmt.Errorf("%s: not a readable parquet file: %v", path, err)
	}
	leaf, ok := pf.Schema().Lookup(column)
	if !ok || leaf.Node == nil || !leaf.Node.Leaf() {
		var present []string
		for _, c := range pf.Schema().Columns() {
			present = append(present, strings.Join(c, "."))
		}
		return columnsMissing(path, column, present)
	}
	if k := leaf.Node.Type().Kind(); k != parquet.ByteArray {
		return &fatalError{fmt.Errorf("%s: column %q holds %s values, not text", path, column, k)}
	}
	var row int64
	buf := make([]parquet.Value, 256)
	for _, rg := range pf.RowGroups() {
		pages := rg.ColumnChunks()[leaf.ColumnIndex].Pages()
		for {
			page, err := pages.ReadPage()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				pages.Close()
				return fmt.Errorf("%s: row %d: %v", path, row, err)
			}
			vr := page.Values()
			for {
				n, err := vr.ReadValues(buf)
				for _, v := range buf[:n] {
					if v.RepetitionLevel() != 0 {
						continue // only the first value of a repeated column
					}
					var ferr error
					if v.IsNull() {
						ferr = fn(row, nil, true)
					} else {
						ferr = fn(row, v.ByteArray(), false)
					}
					if ferr != nil {
						pages.Close()
						return &fatalError{ferr}
					}
					row++
				}
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					pages.Close()
					return fmt.Errorf("%s: row %d: %v", path, row, err)
				}
			}
			parquet.Release(page)
		}
		pages.Close()
	}
	return nil
}

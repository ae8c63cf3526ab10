package repository

import (
	"reflect"
	"strings"

	"github.com/keel-go/keel/aggregate"
	"github.com/keel-go/keel/internal/dialect"
)

// taggedFields derives TableConfig.Columns and TableConfig.Fields from the
// `db:"column"` tags of T's struct fields, including those of embedded
// structs, as sqlx does. Untagged fields and fields tagged "-" are skipped.
// The struct is inspected once; each call of the returned Fields function
// walks the recorded field indexes.
func taggedFields[T aggregate.Aggregate]() ([]string, func(T) []any, error) {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil, nil, dialect.Invalid("TableConfig.Columns and Fields are nil, and %s is not a pointer to a struct whose db tags could name them; set both", t)
	}
	var (
		columns []string
		indexes [][]int
	)
	var walk func(s reflect.Type, prefix []int)
	walk = func(s reflect.Type, prefix []int) {
		for i := 0; i < s.NumField(); i++ {
			f := s.Field(i)
			index := append(append([]int(nil), prefix...), i)
			tag, tagged := f.Tag.Lookup("db")
			tag, _, _ = strings.Cut(tag, ",")
			switch {
			case tag == "-":
			case f.Anonymous && !tagged && f.Type.Kind() == reflect.Struct:
				walk(f.Type, index)
			case tagged && tag != "" && f.IsExported():
				columns = append(columns, tag)
				indexes = append(indexes, index)
			}
		}
	}
	walk(t.Elem(), nil)
	if len(columns) == 0 {
		return nil, nil, dialect.Invalid("TableConfig.Columns and Fields are nil, and %s has no fields tagged `db:\"column\"`; tag them or set both", t.Elem())
	}
	fields := func(a T) []any {
		v := reflect.ValueOf(a).Elem()
		ptrs := make([]any, len(indexes))
		for i, index := range indexes {
			ptrs[i] = v.FieldByIndex(index).Addr().Interface()
		}
		return ptrs
	}
	return columns, fields, nil
}

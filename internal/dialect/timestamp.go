package dialect

import (
	"fmt"
	"strconv"
	"time"
)

// Timestamp scans a timestamp column written with Dialect.Time, whatever
// the dialect stores: a time, or integer Unix microseconds. NULL scans as
// the zero time.
type Timestamp struct{ time.Time }

// Scan implements sql.Scanner.
func (ts *Timestamp) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		ts.Time = time.Time{}
	case time.Time:
		ts.Time = v.UTC()
	case int64:
		ts.Time = time.UnixMicro(v).UTC()
	case []byte:
		return ts.parse(string(v))
	case string:
		return ts.parse(v)
	default:
		return fmt.Errorf("keel: cannot scan %T into a timestamp", src)
	}
	return nil
}

func (ts *Timestamp) parse(s string) error {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		ts.Time = time.UnixMicro(n).UTC()
		return nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			ts.Time = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("keel: cannot parse timestamp %s", Quote(s))
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/keel-go/keel/dispatch/process"
)

func processesFlags(c *cli) {
	c.fs.StringVar(&c.processType, "type", "", "list only the processes of this type (its process.Config.Name)")
	c.fs.BoolVar(&c.all, "all", false, "list the processes that ended too (completed or compensated)")
	c.fs.IntVar(&c.limit, "limit", 100, "list at most this many processes of each type")
	c.fs.StringVar(&c.afterID, "after", "", "list processes after this id (the previous page's last id; with --type)")
}

// processJSON is a process as the JSON output shows it.
type processJSON struct {
	Type        string          `json:"type"`
	ID          string          `json:"id"`
	Version     int64           `json:"version"`
	Status      process.Status  `json:"status"`
	Reason      string          `json:"reason,omitempty"`
	State       json.RawMessage `json:"state"`
	NextTimeout *time.Time      `json:"next_timeout,omitempty"`
	Timers      []process.Timer `json:"timers,omitempty"`
	Steps       []process.Step  `json:"steps,omitempty"`
	StartedAt   *time.Time      `json:"started_at,omitempty"`
	UpdatedAt   *time.Time      `json:"updated_at,omitempty"`
	EndedAt     *time.Time      `json:"ended_at,omitempty"`
}

func processes(ctx context.Context, c *cli) error {
	if err := c.wantArgs(0, ""); err != nil {
		return err
	}
	if c.limit <= 0 {
		return usagef("--limit is %d; pass a positive number", c.limit)
	}
	if c.afterID != "" && c.processType == "" {
		return usagef("--after needs --type: ids are paged within one process type")
	}
	st, err := c.store(ctx)
	if err != nil {
		return err
	}
	types := []string{c.processType}
	if c.processType == "" {
		if types, err = process.Types(ctx, st); err != nil {
			return err
		}
	}
	var list []process.Info
	full := map[string]bool{} // types with a full page
	for _, typ := range types {
		infos, err := process.List(ctx, st, typ, process.ListOptions{All: c.all, After: c.afterID, Limit: c.limit})
		if err != nil {
			return err
		}
		full[typ] = len(infos) == c.limit
		list = append(list, infos...)
	}
	if c.json {
		out := make([]processJSON, len(list))
		for i, p := range list {
			out[i] = processJSON{
				Type: p.Type, ID: p.ID, Version: p.Version, Status: p.Status, Reason: p.Reason, State: p.State,
				NextTimeout: timePtr(p.NextTimeout), Timers: p.Timers, Steps: p.Steps,
				StartedAt: timePtr(p.StartedAt), UpdatedAt: timePtr(p.UpdatedAt), EndedAt: timePtr(p.EndedAt),
			}
		}
		return c.printJSON(out)
	}
	if len(list) == 0 {
		if c.all {
			fmt.Fprintln(c.stdout, "no processes")
		} else {
			fmt.Fprintln(c.stdout, "no running processes")
		}
		return nil
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TYPE\tID\tSTATUS\tNEXT TIMEOUT\tSTEPS\tUPDATED\tSTATE")
	for _, p := range list {
		next := "-"
		if !p.NextTimeout.IsZero() {
			next = p.NextTimeout.Local().Format(time.DateTime)
		}
		status := string(p.Status)
		if p.Reason != "" {
			status += " (" + p.Reason + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", cell(p.Type, 30), cell(p.ID, 40), cell(status, 50), next,
			len(p.Steps), p.UpdatedAt.Local().Format(time.DateTime), cell(string(p.State), 60))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, typ := range types {
		if full[typ] {
			var last string
			for _, p := range list {
				if p.Type == typ {
					last = p.ID
				}
			}
			fmt.Fprintf(c.stdout, "more %s processes may follow: add --type %s --after %s for the next page\n", typ, typ, last)
		}
	}
	return nil
}

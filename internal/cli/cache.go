package cli

import (
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/factory"
)

func newCacheCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "cache",
		Short: "The task caches builds keep between runs of a pipeline ($SSF_HOME/cache/tasks; docs/caches.md)",
	}
	c.AddCommand(newCacheListCmd(), newCacheRmCmd())
	return c
}

// cacheJSON is one cache in `ssf cache list --output json` (docs/cli-json.md).
type cacheJSON struct {
	Key          string    `json:"key"`
	Pipeline     string    `json:"pipeline"`
	PipelineFile string    `json:"pipelineFile"`
	Source       string    `json:"source"`
	Task         string    `json:"task"`
	Name         string    `json:"name"`
	Builder      string    `json:"builder"`
	Digest       string    `json:"digest"`
	Bytes        int64     `json:"bytes"`
	LastUsed     time.Time `json:"lastUsed"`
	Invocation   string    `json:"invocation"`
	StoredBy     string    `json:"storedBy"`
}

func toCacheJSON(r factory.CacheRecord) cacheJSON {
	return cacheJSON{Key: r.Key, Pipeline: r.Pipeline, PipelineFile: r.PipelineFile, Source: r.Source, Task: r.Task,
		Name: r.CacheKey.Cache, Builder: string(r.Builder), Digest: string(r.Digest), Bytes: r.Bytes,
		LastUsed: r.LastUsed, Invocation: r.Invocation, StoredBy: r.StoredBy}
}

func newCacheListCmd() *cobra.Command {
	var output *outputFormat
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the stored task caches, most recently used first: pipeline, task, cache, builder, size, last used",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			recs, err := h.Caches()
			if err != nil {
				return err
			}
			if *output == outputJSON {
				out := []cacheJSON{}
				for _, r := range recs {
					out = append(out, toCacheJSON(r))
				}
				return writeJSON(cmd.OutOrStdout(), struct {
					Caches []cacheJSON `json:"caches"`
				}{out})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tPIPELINE\tTASK\tCACHE\tBUILDER\tSIZE\tLAST USED")
			// Caches are kept per pipeline file, source directory and builder, and none is removed on its own:
			// the total says what they hold, the hint how to prune them.
			var total int64
			for _, r := range recs {
				total += r.Bytes
			}
			defer func() {
				if len(recs) > 0 {
					n := fmt.Sprintf("%d caches", len(recs))
					if len(recs) == 1 {
						n = "1 cache" // not "1 caches"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s, %s in all (ssf cache rm --unused-for 720h removes those unused for 30 days)\n", n, humanBytes(total))
				}
			}()
			for _, r := range recs {
				if r.Pipeline == "" {
					fmt.Fprintf(tw, "%s\t(unreadable)\t-\t-\t-\t-\t-\n", r.Key[:12])
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Key[:12], printable(r.Pipeline), r.Task, r.CacheKey.Cache,
					shortDigest(string(r.Builder)), humanBytes(r.Bytes), r.LastUsed.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	output = addOutputFlag(cmd)
	return cmd
}

func newCacheRmCmd() *cobra.Command {
	var all bool
	var unusedFor time.Duration
	cmd := &cobra.Command{
		Use:   "rm --all | KEY | PIPELINE[/TASK[/CACHE]] | --unused-for DURATION",
		Short: "Remove stored task caches: all, one by key prefix (8 hex digits or more), or a pipeline's",
		Long: `Remove stored task caches. KEY is a prefix of at least 8 hex digits of a key ssf cache list shows;
PIPELINE[/TASK[/CACHE]] removes every cache of the pipelines of that name (whatever their source), or of one of
their tasks, or one cache of it. --unused-for DURATION (such as 720h) removes the caches no build used for that
long, alone or narrowing the others: caches are kept per pipeline file, source directory and builder, so a moved
checkout or a new builder leaves old ones behind. The next build starts a removed cache empty.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			sel := factory.CacheSelector{All: all}
			prune := cmd.Flags().Changed("unused-for")
			switch {
			case prune && unusedFor <= 0:
				return usagef("cache rm: --unused-for %s: give a positive duration, such as 720h", unusedFor)
			case all && len(a) > 0:
				return usagef("cache rm: give --all or a selector, not both")
			case !all && len(a) == 0 && !prune:
				return usagef("cache rm: give --all, a key prefix, PIPELINE[/TASK[/CACHE]] or --unused-for DURATION (ssf cache list shows them)")
			case !all && len(a) > 0:
				var err error
				if sel, err = cacheSelector(a[0]); err != nil {
					return err
				}
			}
			if prune {
				sel.UnusedSince = time.Now().Add(-unusedFor)
			}
			h, err := home()
			if err != nil {
				return err
			}
			removed, err := h.RemoveCaches(sel)
			for _, r := range removed {
				if r.Pipeline == "" { // its record was unreadable (ssf cache list says so too)
					fmt.Fprintf(cmd.OutOrStdout(), "removed %s (unreadable)\n", r.Key[:12])
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s %s/%s/%s\n", r.Key[:12], printable(r.Pipeline), r.Task, r.CacheKey.Cache)
			}
			if err == nil && len(removed) == 0 && prune {
				fmt.Fprintf(cmd.OutOrStdout(), "nothing removed: no cache that matches is unused for %s\n", unusedFor)
				return nil
			}
			if err == nil && len(removed) == 0 && !all && len(a) > 0 {
				return usagef("cache rm: no cache matches %q (ssf cache list shows them)", printable(a[0]))
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "remove every stored cache")
	cmd.Flags().DurationVar(&unusedFor, "unused-for", 0, "remove only the caches no build used for this long (such as 720h); alone, every such cache")
	return cmd
}

// cacheSelector reads a KEY prefix or PIPELINE[/TASK[/CACHE]]. A pipeline may be named like a key prefix
// ("deadbeef"): "deadbeef/" (one trailing slash) is that pipeline, never a key prefix.
func cacheSelector(s string) (factory.CacheSelector, error) {
	if len(s) >= 8 && len(s) <= 64 && strings.Trim(s, "0123456789abcdef") == "" {
		return factory.CacheSelector{KeyPrefix: s}, nil
	}
	if name, ok := strings.CutSuffix(s, "/"); ok && name != "" && !strings.Contains(name, "/") {
		return factory.CacheSelector{Pipeline: name}, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) > 3 || slices.Contains(parts, "") {
		return factory.CacheSelector{}, usagef("cache rm: %q is neither a key prefix (8 to 64 lower-case hex digits) nor PIPELINE[/TASK[/CACHE]]", printable(s))
	}
	sel := factory.CacheSelector{Pipeline: parts[0]}
	if len(parts) > 1 {
		sel.Task = parts[1]
	}
	if len(parts) > 2 {
		sel.Cache = parts[2]
	}
	return sel, nil
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ssf-dev/ssf/internal/factory"
)

func newBuildsCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "builds",
		Short: "The factory's build history: every build, succeeded, failed or interrupted ($SSF_HOME/builds)",
	}
	c.AddCommand(newBuildsListCmd(), newBuildsShowCmd(), newBuildsPruneCmd())
	return c
}

func newBuildsListCmd() *cobra.Command {
	var output *outputFormat
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List recorded builds, newest first: id, pipeline, status, start, duration",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			recs, err := h.Builds()
			if err != nil {
				return err
			}
			if *output == outputJSON {
				if recs == nil {
					recs = []factory.BuildRecord{}
				}
				return writeJSON(cmd.OutOrStdout(), struct {
					Builds []factory.BuildRecord `json:"builds"`
				}{recs})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tPIPELINE\tSTATUS\tSTARTED\tDURATION")
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.ID, printable(pipelineOf(r)), r.Status,
					r.StartedAt.Local().Format(time.DateTime), duration(r))
			}
			return tw.Flush()
		},
	}
	output = addOutputFlag(cmd)
	return cmd
}

// pipelineOf names a recorded build's pipeline: its name, else the file it came from.
func pipelineOf(r factory.BuildRecord) string {
	if r.PipelineName != "" {
		return r.PipelineName
	}
	return r.PipelinePath
}

func duration(r factory.BuildRecord) string {
	if r.FinishedAt == nil {
		return "-"
	}
	return (time.Duration(r.DurationMs) * time.Millisecond).Round(100 * time.Millisecond).String()
}

func newBuildsShowCmd() *cobra.Command {
	var output *outputFormat
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a recorded build: pipeline, params, source, status, and each task's and step's exit code and time",
		Long: `Show a recorded build. ID is a build's invocation id (printed by ssf build and ssf builds list) or a
unique prefix of one. With --output json, the stored record (build.json) is printed as one JSON object.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			h, err := home()
			if err != nil {
				return err
			}
			r, err := h.FindBuild(a[0])
			if err != nil {
				return err
			}
			if *output == outputJSON {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "build     %s\n", r.ID)
			fmt.Fprintf(&b, "status    %s\n", r.Status)
			if r.Error != "" {
				fmt.Fprintf(&b, "error     %s\n", r.Error)
			}
			fmt.Fprintf(&b, "pipeline  %s (%s)\n", pipelineOf(r), r.PipelinePath)
			if r.PipelineDigest != "" {
				fmt.Fprintf(&b, "digest    %s\n", r.PipelineDigest)
			}
			for _, k := range sortedKeys(r.Params) {
				fmt.Fprintf(&b, "param     %s=%s\n", k, r.Params[k])
			}
			if r.SourceURI != "" {
				fmt.Fprintf(&b, "source    %s", r.SourceURI)
				for _, alg := range sortedKeys(r.SourceDigest) {
					fmt.Fprintf(&b, " %s:%s", alg, r.SourceDigest[alg])
				}
				b.WriteString("\n")
			}
			if r.Builder != "" {
				fmt.Fprintf(&b, "builder   %s\n", r.Builder)
			}
			if r.Out != "" {
				fmt.Fprintf(&b, "out       %s\n", r.Out)
			}
			fmt.Fprintf(&b, "started   %s\n", r.StartedAt.Local().Format(time.RFC3339))
			fmt.Fprintf(&b, "duration  %s\n", duration(r))
			for _, t := range r.Tasks {
				code := ""
				if t.ExitCode != nil {
					code = ", exit code " + strconv.Itoa(*t.ExitCode)
				}
				fmt.Fprintf(&b, "task %s: %s%s, %s\n", t.Name, t.Status, code, time.Duration(t.DurationMs)*time.Millisecond)
				for _, s := range t.Steps {
					fmt.Fprintf(&b, "  step %s: exit code %d, %s\n", s.Name, s.ExitCode, time.Duration(s.DurationMs)*time.Millisecond)
				}
				if t.Workspace != "" {
					fmt.Fprintf(&b, "  workspace %s (kept by --keep-workspace, read-only)\n", t.Workspace)
				}
			}
			for _, name := range r.Bundles {
				fmt.Fprintf(&b, "bundle    %s\n", name)
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), printable(b.String()))
			return err
		},
	}
	output = addOutputFlag(cmd)
	return cmd
}

func newBuildsPruneCmd() *cobra.Command {
	var keep int
	cmd := &cobra.Command{
		Use:   "prune --keep N",
		Short: "Remove all but the newest N recorded builds (a build still running is kept)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("keep") {
				return usagef("builds prune: --keep N is required (the number of newest builds to keep)")
			}
			h, err := home()
			if err != nil {
				return err
			}
			removed, err := h.PruneBuilds(keep)
			for _, id := range removed {
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", id)
			}
			return err
		},
	}
	cmd.Flags().IntVar(&keep, "keep", 0, "how many of the newest builds to keep")
	return cmd
}

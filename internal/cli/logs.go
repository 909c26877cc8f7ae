package cli

import (
	"github.com/spf13/cobra"
)

func newLogsCmd() *cobra.Command {
	var task, step string
	cmd := &cobra.Command{
		Use:   "logs ID [--task T] [--step S]",
		Short: "Print the stored log of a recorded build: every task's, one task's, or one step's",
		Long: `Print the stored log of a recorded build (ssf builds list shows them; ID may be a unique prefix). Each line
is prefixed [TASK/STEP] as it was on the terminal; the log keeps the raw bytes, which are escaped here when
they would move the cursor or forge lines. Without --task, the logs of every task that ran, in order.
--step needs --task.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if step != "" && task == "" {
				return usagef("logs: --step %q needs --task (the task the step belongs to)", step)
			}
			h, err := home()
			if err != nil {
				return err
			}
			r, err := h.FindBuild(a[0])
			if err != nil {
				return err
			}
			tasks := []string{task}
			if task == "" {
				tasks = nil
				for _, t := range r.Tasks {
					if t.Log != "" {
						tasks = append(tasks, t.Name)
					}
				}
			}
			for _, t := range tasks {
				data, err := h.BuildLog(r, t, step)
				if err != nil {
					return err
				}
				if _, err := cmd.OutOrStdout().Write([]byte(printable(string(data)))); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&task, "task", "", "print only this task's log")
	cmd.Flags().StringVar(&step, "step", "", "print only this step's lines (with --task)")
	return cmd
}

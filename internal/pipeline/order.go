package pipeline

import "slices"

// Order returns the tasks in a deterministic topological order: each task after the tasks it
// needs and, among tasks that are ready at the same time, in file order.
//
// Parse guarantees every need exists and there is no cycle. In a Pipeline built by other means, a
// task that can never become ready is left out.
func (p *Pipeline) Order() []*Task {
	byName := make(map[string]int, len(p.Tasks))
	for i, t := range p.Tasks {
		byName[t.Name] = i
	}
	waiting := make([]int, len(p.Tasks)) // needs of each task not yet in the order
	users := make([][]int, len(p.Tasks)) // the tasks that need each task
	var ready []int                      // sorted, so the earliest ready task in the file goes next
	for i, t := range p.Tasks {
		for _, need := range t.Needs {
			waiting[i]++
			if j, ok := byName[need]; ok {
				users[j] = append(users[j], i)
			}
		}
		if waiting[i] == 0 {
			ready = append(ready, i)
		}
	}
	order := make([]*Task, 0, len(p.Tasks))
	for len(ready) > 0 {
		i := ready[0]
		ready = ready[1:]
		order = append(order, &p.Tasks[i])
		for _, u := range users[i] {
			if waiting[u]--; waiting[u] == 0 {
				at, _ := slices.BinarySearch(ready, u)
				ready = slices.Insert(ready, at, u)
			}
		}
	}
	return order
}

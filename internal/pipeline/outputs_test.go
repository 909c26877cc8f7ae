package pipeline

import (
	"reflect"
	"testing"
)

func TestParseOutputsSeed(t *testing.T) {
	p, err := Load("testdata/outputs.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]Output{
		{{Path: "js", Dir: true, Internal: true, Line: 10}, {Path: "types.d.ts", Internal: true, Line: 11}},
		{{Path: "dist", Dir: true, Line: 15}, {Path: "stats.json", Line: 15}},
		nil,
	}
	for i, task := range p.Tasks {
		if !reflect.DeepEqual(task.Outputs, want[i]) {
			t.Errorf("task %s outputs = %+v, want %+v", task.Name, task.Outputs, want[i])
		}
	}
}

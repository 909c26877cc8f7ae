package admission

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Container is one container of the object under review, or one image volume: where its image is, as a JSON
// pointer for the patch.
type Container struct {
	Name   string // the container's name (the volume's, for an image volume)
	Image  string // as the object names it
	Path   string // JSON pointer of the image field, e.g. /spec/template/spec/containers/0/image
	Volume bool   // an image volume (spec.volumes[].image.reference), not a container
}

// What names c in a denial: container "NAME", or image volume "NAME".
func (c Container) what() string {
	if c.Volume {
		return fmt.Sprintf("image volume %q", c.Name)
	}
	return fmt.Sprintf("container %q", c.Name)
}

// podPaths are the JSON pointers of the pod spec in each kind the webhook decides, by API group and kind.
var podPaths = map[GroupVersionKind]string{
	{Group: "", Version: "v1", Kind: "Pod"}:                   "/spec",
	{Group: "", Version: "v1", Kind: "ReplicationController"}: "/spec/template/spec",
	{Group: "apps", Version: "v1", Kind: "Deployment"}:        "/spec/template/spec",
	{Group: "apps", Version: "v1", Kind: "StatefulSet"}:       "/spec/template/spec",
	{Group: "apps", Version: "v1", Kind: "DaemonSet"}:         "/spec/template/spec",
	{Group: "apps", Version: "v1", Kind: "ReplicaSet"}:        "/spec/template/spec",
	{Group: "batch", Version: "v1", Kind: "Job"}:              "/spec/template/spec",
	{Group: "batch", Version: "v1", Kind: "CronJob"}:          "/spec/jobTemplate/spec/template/spec",
}

// MaxContainers bounds the containers read from one object; the API server's own validation has no such limit,
// but no pod runs hundreds, and each one may cost a registry round trip.
const MaxContainers = 256

// podSpec holds the three container lists of a pod spec, each container with its name and image only, and the
// volumes (an image volume mounts an OCI image's files into the containers: images too, whose content reaches
// what runs, a script an interpreter of a verified image reads, a plugin it loads).
type podSpec struct {
	Containers          []containerSpec `json:"containers"`
	InitContainers      []containerSpec `json:"initContainers"`
	EphemeralContainers []containerSpec `json:"ephemeralContainers"`
	Volumes             []volumeSpec    `json:"volumes"`
}

type volumeSpec struct {
	Name  string `json:"name"`
	Image *struct {
		Reference string `json:"reference"`
	} `json:"image"`
}

type containerSpec struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

// object is what is read of any kind: its name and the pod spec at the kind's path.
type object struct {
	Metadata struct {
		Name         string `json:"name"`
		GenerateName string `json:"generateName"`
	} `json:"metadata"`
	Spec json.RawMessage `json:"spec"`
}

// Containers returns every container (containers, initContainers and ephemeralContainers) of the pod spec in
// obj, a JSON object of kind k, and the object's name (its generateName when it has no name yet). A kind the
// webhook does not decide is an error: the webhook configuration sends only those it does.
func Containers(k GroupVersionKind, obj []byte) (name string, cs []Container, err error) {
	path, ok := podPaths[k]
	if !ok {
		return "", nil, fmt.Errorf("%w: kind %s is not one the webhook decides (Pods, ReplicationControllers, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs)", ErrBadReview, gvkString(k))
	}
	var o object
	if err := json.Unmarshal(obj, &o); err != nil {
		return "", nil, fmt.Errorf("%w: decoding the %s: %w", ErrBadReview, k.Kind, err)
	}
	name = o.Metadata.Name
	if name == "" {
		name = o.Metadata.GenerateName
	}
	// Walk down the path one object at a time: /spec is read above, then template/spec or jobTemplate/spec/...
	raw := o.Spec
	steps := splitPointer(path)[1:]
	for _, s := range steps {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil || m == nil {
			return name, nil, fmt.Errorf("%w: %s %q has no pod spec at %s", ErrBadReview, k.Kind, name, path)
		}
		raw = m[s]
	}
	var spec podSpec
	if len(raw) == 0 || json.Unmarshal(raw, &spec) != nil {
		return name, nil, fmt.Errorf("%w: %s %q has no pod spec at %s", ErrBadReview, k.Kind, name, path)
	}
	for _, list := range []struct {
		field string
		cs    []containerSpec
	}{{"containers", spec.Containers}, {"initContainers", spec.InitContainers}, {"ephemeralContainers", spec.EphemeralContainers}} {
		for i, c := range list.cs {
			if len(cs) == MaxContainers {
				return name, nil, fmt.Errorf("%w: %s %q has more than %d containers", ErrBadReview, k.Kind, name, MaxContainers)
			}
			cs = append(cs, Container{Name: c.Name, Image: c.Image, Path: path + "/" + list.field + "/" + strconv.Itoa(i) + "/image"})
		}
	}
	for i, v := range spec.Volumes {
		if v.Image == nil {
			continue
		}
		if len(cs) == MaxContainers {
			return name, nil, fmt.Errorf("%w: %s %q has more than %d containers and image volumes", ErrBadReview, k.Kind, name, MaxContainers)
		}
		cs = append(cs, Container{Name: v.Name, Image: v.Image.Reference, Path: path + "/volumes/" + strconv.Itoa(i) + "/image/reference", Volume: true})
	}
	return name, cs, nil
}

// splitPointer splits a JSON pointer made of plain names ("/spec/template/spec") into its names.
func splitPointer(p string) []string {
	var out []string
	start := 1
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}

func gvkString(k GroupVersionKind) string {
	g := k.Group
	if g == "" {
		g = "core"
	}
	return fmt.Sprintf("%.60s/%.20s %.60s", g, k.Version, k.Kind)
}

// jsondecode is the oracle of the JSON differential test (tests/it/json_differential.rs): it
// decodes documents with Go's encoding/json, as dockerd, containerd, skopeo and podman do, into
// structs with the JSON field names of the OCI image-spec v1 (Manifest, Index, Descriptor,
// Platform, Image) and of moby's container config (Healthcheck, OnBuild), and prints the fields
// portcullis judges as canonical JSON. Standard library only.
//
// Input (stdin): one record per line, "<kind> <base64 of the document>", kind being manifest,
// index or config. Output (stdout): one JSON line per record, {"ok":true,"value":{...}} or
// {"ok":false,"error":"..."}.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type Platform struct {
	Architecture string   `json:"architecture"`
	OS           string   `json:"os"`
	OSVersion    string   `json:"os.version,omitempty"`
	OSFeatures   []string `json:"os.features,omitempty"`
	Variant      string   `json:"variant,omitempty"`
}

type Descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Data         []byte            `json:"data,omitempty"`
	Platform     *Platform         `json:"platform,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
}

type Manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        Descriptor        `json:"config"`
	Layers        []Descriptor      `json:"layers"`
	Subject       *Descriptor       `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

type Index struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Manifests     []Descriptor      `json:"manifests"`
	Subject       *Descriptor       `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

type HealthConfig struct {
	Test []string `json:",omitempty"`
}

// ImageConfig is the image-spec's v1.ImageConfig plus what moby's container.Config adds and
// dockerd acts on.
type ImageConfig struct {
	User         string              `json:"User,omitempty"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts,omitempty"`
	Env          []string            `json:"Env,omitempty"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	Volumes      map[string]struct{} `json:"Volumes,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Labels       map[string]string   `json:"Labels,omitempty"`
	StopSignal   string              `json:"StopSignal,omitempty"`
	Healthcheck  *HealthConfig       `json:"Healthcheck,omitempty"`
	OnBuild      []string            `json:"OnBuild,omitempty"`
}

type RootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

// History's created is a *time.Time in the spec; it is a string here, as portcullis does not
// judge it (a bad time makes the clients refuse the whole config, which is safe either way).
type History struct {
	Created    string `json:"created,omitempty"`
	CreatedBy  string `json:"created_by,omitempty"`
	Author     string `json:"author,omitempty"`
	Comment    string `json:"comment,omitempty"`
	EmptyLayer bool   `json:"empty_layer,omitempty"`
}

type Image struct {
	Created      string      `json:"created,omitempty"`
	Author       string      `json:"author,omitempty"`
	Architecture string      `json:"architecture"`
	Variant      string      `json:"variant,omitempty"`
	OS           string      `json:"os"`
	OSVersion    string      `json:"os.version,omitempty"`
	OSFeatures   []string    `json:"os.features,omitempty"`
	Config       ImageConfig `json:"config,omitempty"`
	RootFS       RootFS      `json:"rootfs"`
	History      []History   `json:"history,omitempty"`
}

// The canonical view: every field present, no nil lists or maps.

func strs(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func strMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func descriptor(d Descriptor) map[string]any {
	var platform any
	if d.Platform != nil {
		platform = map[string]any{
			"architecture": d.Platform.Architecture,
			"os":           d.Platform.OS,
			"variant":      d.Platform.Variant,
		}
	}
	return map[string]any{
		"mediaType":   d.MediaType,
		"digest":      d.Digest,
		"size":        d.Size,
		"platform":    platform,
		"annotations": strMap(d.Annotations),
	}
}

func descriptors(ds []Descriptor) []any {
	out := []any{}
	for _, d := range ds {
		out = append(out, descriptor(d))
	}
	return out
}

func decode(kind string, doc []byte) (any, error) {
	switch kind {
	case "manifest":
		var m Manifest
		if err := json.Unmarshal(doc, &m); err != nil {
			return nil, err
		}
		return map[string]any{
			"schemaVersion": m.SchemaVersion,
			"mediaType":     m.MediaType,
			"config":        descriptor(m.Config),
			"layers":        descriptors(m.Layers),
		}, nil
	case "index":
		var i Index
		if err := json.Unmarshal(doc, &i); err != nil {
			return nil, err
		}
		return map[string]any{
			"schemaVersion": i.SchemaVersion,
			"mediaType":     i.MediaType,
			"manifests":     descriptors(i.Manifests),
		}, nil
	case "config":
		var c Image
		if err := json.Unmarshal(doc, &c); err != nil {
			return nil, err
		}
		var test []string
		if c.Config.Healthcheck != nil {
			test = c.Config.Healthcheck.Test
		}
		history := []any{}
		for _, h := range c.History {
			history = append(history, map[string]any{"created_by": h.CreatedBy, "comment": h.Comment})
		}
		return map[string]any{
			"architecture": c.Architecture,
			"os":           c.OS,
			"variant":      c.Variant,
			"config": map[string]any{
				"User":        c.Config.User,
				"Env":         strs(c.Config.Env),
				"Entrypoint":  strs(c.Config.Entrypoint),
				"Cmd":         strs(c.Config.Cmd),
				"WorkingDir":  c.Config.WorkingDir,
				"Labels":      strMap(c.Config.Labels),
				"Healthcheck": strs(test),
				"OnBuild":     strs(c.Config.OnBuild),
			},
			"history": history,
		}, nil
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		kind, b64, ok := strings.Cut(in.Text(), " ")
		if !ok {
			fmt.Fprintln(os.Stderr, "jsondecode: a line is not '<kind> <base64>'")
			os.Exit(2)
		}
		doc, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "jsondecode: bad base64:", err)
			os.Exit(2)
		}
		value, err := decode(kind, doc)
		if err != nil {
			enc.Encode(map[string]any{"ok": false, "error": err.Error()})
			continue
		}
		enc.Encode(map[string]any{"ok": true, "value": value})
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "jsondecode:", err)
		os.Exit(2)
	}
}

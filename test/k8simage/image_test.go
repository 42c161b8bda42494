package k8simage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const repo = "../.."

// layout returns the OCI layout directory and the tag to test.
func layout(t *testing.T) (string, string) {
	t.Helper()
	dir := os.Getenv("SCC_IMAGE_LAYOUT")
	if dir == "" {
		t.Skip("SCC_IMAGE_LAYOUT not set: make image-test builds the image and sets it")
	}
	return dir, version(t)
}

func version(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo, "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Annotations map[string]string `json:"annotations"`
}

type imageConfig struct {
	User         string              `json:"User"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts"`
	Env          []string            `json:"Env"`
	Entrypoint   []string            `json:"Entrypoint"`
	Cmd          []string            `json:"Cmd"`
	WorkingDir   string              `json:"WorkingDir"`
	Labels       map[string]string   `json:"Labels"`
}

type image struct {
	Config imageConfig
	Files  map[string]*tar.Header // regular files and symlinks, by absolute path
}

func blob(t *testing.T, dir, digest string) []byte {
	t.Helper()
	algo, hex, ok := strings.Cut(digest, ":")
	if !ok {
		t.Fatalf("bad digest %q", digest)
	}
	b, err := os.ReadFile(filepath.Join(dir, "blobs", algo, hex))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readImage reads the image tagged tag from the OCI layout dir: its config
// and the files of its layers (later layers win; whiteouts are not used by
// the image build and fail the test).
func readImage(t *testing.T, dir, tag string) image {
	t.Helper()
	var index struct{ Manifests []descriptor }
	if err := json.Unmarshal(blob0(t, filepath.Join(dir, "index.json")), &index); err != nil {
		t.Fatal(err)
	}
	var mdesc *descriptor
	for i, m := range index.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == tag {
			mdesc = &index.Manifests[i]
		}
	}
	if mdesc == nil {
		t.Fatalf("no tag %q in %s/index.json", tag, dir)
	}
	var manifest struct {
		Config descriptor
		Layers []descriptor
	}
	if err := json.Unmarshal(blob(t, dir, mdesc.Digest), &manifest); err != nil {
		t.Fatal(err)
	}
	var cfg struct{ Config imageConfig }
	if err := json.Unmarshal(blob(t, dir, manifest.Config.Digest), &cfg); err != nil {
		t.Fatal(err)
	}
	img := image{Config: cfg.Config, Files: map[string]*tar.Header{}}
	for _, l := range manifest.Layers {
		var r io.Reader = bytes.NewReader(blob(t, dir, l.Digest))
		if strings.HasSuffix(l.MediaType, "+gzip") {
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			name := path.Clean("/" + h.Name)
			if strings.HasPrefix(path.Base(name), ".wh.") {
				t.Fatalf("layer has a whiteout %s", name)
			}
			if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeLink {
				img.Files[name] = h
			}
		}
	}
	return img
}

func blob0(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// declared is what the Dockerfile's final stage declares.
type declared struct {
	Files      []string
	Entrypoint []string
	User       string
	Ports      []string
	Labels     map[string]string
	Env        []string
	WorkingDir string
}

// dockerfileInstructions returns the instructions of the Dockerfile's last
// stage, continuation lines joined and comments dropped.
func dockerfileInstructions(t *testing.T, text string) [][2]string {
	t.Helper()
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") || (l == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var out [][2]string
	for _, l := range lines {
		op, rest, _ := strings.Cut(l, " ")
		op = strings.ToUpper(op)
		if op == "FROM" {
			out = nil
			continue
		}
		out = append(out, [2]string{op, strings.TrimSpace(rest)})
	}
	return out
}

var labelRE = regexp.MustCompile(`([A-Za-z0-9._-]+)="([^"]*)"`)

// cmdBinaries lists the binaries `go build -o DIR ./cmd/...` writes: one
// per directory of cmd/ with a main package.
func cmdBinaries(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(repo, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		gofiles, _ := filepath.Glob(filepath.Join(repo, "cmd", e.Name(), "*.go"))
		for _, f := range gofiles {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			if b, err := os.ReadFile(f); err == nil && regexp.MustCompile(`(?m)^package main$`).Match(b) {
				out = append(out, e.Name())
				break
			}
		}
	}
	return out
}

func parseDockerfile(t *testing.T, text, version string) declared {
	t.Helper()
	d := declared{Labels: map[string]string{}}
	args := map[string]string{"VERSION": version}
	for _, in := range dockerfileInstructions(t, text) {
		op, rest := in[0], in[1]
		switch op {
		case "COPY":
			f := strings.Fields(rest)
			from := ""
			if strings.HasPrefix(f[0], "--from=") {
				from, f = strings.TrimPrefix(f[0], "--from="), f[1:]
			}
			if len(f) != 2 {
				t.Fatalf("COPY with %d paths: %s", len(f), rest)
			}
			src, dst := f[0], f[1]
			switch {
			case from == "" && strings.HasSuffix(src, "/"):
				// A directory of the build context: its files under dst.
				base := filepath.Join(repo, src)
				err := filepath.WalkDir(base, func(p string, de fs.DirEntry, err error) error {
					if err != nil || de.IsDir() {
						return err
					}
					rel, _ := filepath.Rel(base, p)
					d.Files = append(d.Files, path.Join(dst, filepath.ToSlash(rel)))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			case from == "build" && src == "/out/":
				// The build stage's `go build -o /out/ ./cmd/...`.
				for _, b := range cmdBinaries(t) {
					d.Files = append(d.Files, path.Join(dst, b))
				}
			case from != "" && !strings.HasSuffix(src, "/") && !strings.HasSuffix(dst, "/"):
				d.Files = append(d.Files, dst)
			default:
				t.Fatalf("COPY form this test does not know: %s", rest)
			}
		case "ARG":
			k, v, _ := strings.Cut(rest, "=")
			if _, set := args[k]; !set {
				args[k] = v
			}
		case "LABEL":
			for _, m := range labelRE.FindAllStringSubmatch(rest, -1) {
				d.Labels[m[1]] = os.Expand(m[2], func(k string) string { return args[k] })
			}
		case "ENV":
			d.Env = append(d.Env, rest)
		case "WORKDIR":
			d.WorkingDir = rest
		case "USER":
			d.User = rest
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				d.Ports = append(d.Ports, p)
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.Entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s: %v", rest, err)
			}
		default:
			t.Fatalf("Dockerfile instruction this test does not know: %s %s", op, rest)
		}
	}
	sort.Strings(d.Files)
	sort.Strings(d.Ports)
	return d
}

// TestImageMatchesDockerfile: the image holds exactly the files the
// Dockerfile's final stage declares, owned by root and not writable by the
// user it runs as, with the Dockerfile's entrypoint, user, ports, labels,
// environment and working directory.
func TestImageMatchesDockerfile(t *testing.T) {
	dir, tag := layout(t)
	df, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	want := parseDockerfile(t, string(df), tag)
	for _, tg := range []string{tag, "dev"} {
		for _, e := range imageErrors(tg, readImage(t, dir, tg), want, tag) {
			t.Error(e)
		}
	}
}

// imageErrors compares an image with the Dockerfile's declarations.
func imageErrors(tag string, img image, want declared, version string) []string {
	var errs []string
	errorf := func(format string, a ...any) { errs = append(errs, tag+": "+fmt.Sprintf(format, a...)) }
	var got []string
	for name, h := range img.Files {
		got = append(got, name)
		if h.Uid != 0 || h.Gid != 0 {
			errorf("%s owned by %d:%d, want 0:0", name, h.Uid, h.Gid)
		}
		if h.Mode&0o022 != 0 {
			errorf("%s mode %o is group or world writable", name, h.Mode)
		}
		if strings.HasPrefix(name, "/usr/local/bin/") && h.Mode&0o111 != 0o111 {
			errorf("%s mode %o not executable", name, h.Mode)
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, want.Files) {
		errorf("files differ from the Dockerfile's\n image:      %v\n Dockerfile: %v", got, want.Files)
	}
	c := img.Config
	if !slices.Equal(c.Entrypoint, want.Entrypoint) {
		errorf("entrypoint %q, Dockerfile %q", c.Entrypoint, want.Entrypoint)
	}
	if len(c.Cmd) != 0 {
		errorf("cmd %q, Dockerfile none", c.Cmd)
	}
	if c.User != want.User || c.User != "65532:65532" {
		errorf("user %q, Dockerfile %q, manifests 65532:65532", c.User, want.User)
	}
	var ports []string
	for p := range c.ExposedPorts {
		ports = append(ports, p)
	}
	sort.Strings(ports)
	if !slices.Equal(ports, want.Ports) {
		errorf("ports %v, Dockerfile %v", ports, want.Ports)
	}
	if fmt.Sprint(c.Labels) != fmt.Sprint(want.Labels) {
		errorf("labels %v, Dockerfile %v", c.Labels, want.Labels)
	}
	if c.Labels["org.opencontainers.image.version"] != version {
		errorf("version label %q, VERSION %q", c.Labels["org.opencontainers.image.version"], version)
	}
	if !slices.Equal(c.Env, want.Env) {
		errorf("env %q, Dockerfile %q", c.Env, want.Env)
	}
	if c.WorkingDir != want.WorkingDir {
		errorf("workdir %q, Dockerfile %q", c.WorkingDir, want.WorkingDir)
	}
	for _, f := range []string{"/etc/passwd", "/etc/group", "/etc/ssl/certs/ca-certificates.crt"} {
		if img.Files[f] == nil {
			errorf("no %s", f)
		}
	}
	return errs
}

// TestDockerfileParser: the declaration parser sees a changed file list,
// user or label (so the comparison above can fail).
func TestDockerfileParser(t *testing.T) {
	df, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	base := parseDockerfile(t, string(df), "v9")
	if !slices.Contains(base.Files, "/usr/local/bin/scc-frontend") || !slices.Contains(base.Files, "/etc/passwd") ||
		!slices.Contains(base.Files, "/etc/ssl/certs/ca-certificates.crt") {
		t.Fatalf("files %v", base.Files)
	}
	if base.User != "65532:65532" || base.Labels["org.opencontainers.image.version"] != "v9" {
		t.Fatalf("user %q labels %v", base.User, base.Labels)
	}
	extra := parseDockerfile(t, strings.Replace(string(df), "ENTRYPOINT", "COPY --from=build /bin/sh /bin/sh\nENTRYPOINT", 1), "v9")
	if len(extra.Files) != len(base.Files)+1 {
		t.Fatalf("an added COPY is not seen: %v", extra.Files)
	}
	img := image{Config: imageConfig{User: base.User, Entrypoint: base.Entrypoint, Labels: base.Labels,
		Env: base.Env, WorkingDir: base.WorkingDir, ExposedPorts: map[string]struct{}{}}, Files: map[string]*tar.Header{}}
	for _, p := range base.Ports {
		img.Config.ExposedPorts[p] = struct{}{}
	}
	for _, f := range base.Files {
		img.Files[f] = &tar.Header{Name: f, Mode: 0o755}
	}
	if errs := imageErrors("x", img, base, "v9"); len(errs) != 0 {
		t.Fatalf("a matching image fails: %v", errs)
	}
	img.Files["/bin/sh"] = &tar.Header{Name: "/bin/sh", Mode: 0o755}
	img.Config.User = "0:0"
	img.Files["/etc/passwd"].Mode = 0o666
	if errs := imageErrors("x", img, base, "v9"); len(errs) != 3 {
		t.Fatalf("an extra file, a writable file and the root user give %d errors, want 3: %v", len(errs), errs)
	}
}

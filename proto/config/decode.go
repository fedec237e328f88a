package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FieldError is one problem in a configuration file, at a field path such
// as "providers[1].credentials.api_key_env". Path is "" for a problem with
// the file as a whole (not YAML, several documents, ...).
type FieldError struct {
	// Path is the field path, e.g. "model_groups[0].deployments[2]".
	Path string
	// Msg says what is wrong; it never contains a secret.
	Msg string
}

// Error implements error as "path: message".
func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errors is every problem found in a file, sorted by field path (indices
// compare as numbers, so providers[2] comes before providers[10]).
type Errors []*FieldError

// Error lists the problems, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each *FieldError to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// maxNodes bounds the YAML nodes a file may expand to, aliases included,
// so that a "billion laughs" file cannot stall the loader.
const maxNodes = 1 << 18

// maxDepth bounds nesting (and alias cycles).
const maxDepth = 32

// errs collects field errors.
type errs struct {
	list   Errors
	nodes  int
	big    bool
	shapes map[string]bool // paths whose value had the wrong shape
}

// maxErrors bounds the problems listed; more are summarised in one line.
const maxErrors = 100

// add records a problem, unless it is under a path whose value had the
// wrong shape: "deployments[1]: expected a mapping" says it all, without
// "deployments[1].name: must be set" and the like.
func (c *errs) add(path, format string, args ...any) {
	if c.underShape(path) {
		return
	}
	c.list = append(c.list, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// shape records a value of the wrong shape or type at path.
func (c *errs) shape(path, format string, args ...any) {
	c.add(path, format, args...)
	if c.shapes == nil {
		c.shapes = map[string]bool{}
	}
	c.shapes[path] = true
}

// underShape reports whether path is at or below a path recorded by shape.
func (c *errs) underShape(path string) bool {
	if len(c.shapes) == 0 {
		return false
	}
	if c.shapes[path] {
		return true
	}
	for i := len(path) - 1; i > 0; i-- {
		if (path[i] == '.' || path[i] == '[') && c.shapes[path[:i]] {
			return true
		}
	}
	return false
}

// result returns the sorted errors, or nil when there are none.
func (c *errs) result() error {
	if len(c.list) == 0 {
		return nil
	}
	out := slices.Clone(c.list)
	slices.SortStableFunc(out, func(a, b *FieldError) int { return comparePaths(a.Path, b.Path) })
	if n := len(out); n > maxErrors {
		out = append(out[:maxErrors:maxErrors], &FieldError{Msg: fmt.Sprintf("... and %d more problems", n-maxErrors)})
	}
	return out
}

// comparePaths orders field paths, comparing runs of digits by value.
func comparePaths(a, b string) int {
	for a != "" && b != "" {
		if isDigit(a[0]) && isDigit(b[0]) {
			na, nb := digitRun(a), digitRun(b)
			ta, tb := strings.TrimLeft(a[:na], "0"), strings.TrimLeft(b[:nb], "0")
			if c := len(ta) - len(tb); c != 0 {
				return c
			}
			if c := strings.Compare(ta, tb); c != 0 {
				return c
			}
			a, b = a[na:], b[nb:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func digitRun(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// decodeFile decodes YAML strictly: one document, a mapping at the root,
// no unknown fields anywhere, every type mismatch reported with its path.
// It returns nil when the file cannot be decoded at all.
func decodeFile(data []byte, c *errs) *File {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			c.add("", "the file is empty")
			return nil
		}
		c.add("", "invalid YAML: %v", err)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		c.add("", "the file must hold exactly one YAML document")
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	if root.Kind != yaml.MappingNode {
		c.add("", "the root must be a mapping")
		return nil
	}
	var f File
	decodeNode(root, reflect.ValueOf(&f).Elem(), "", c, 0)
	return &f
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// visit counts a node against maxNodes and depth against maxDepth.
func (c *errs) visit(path string, depth int) bool {
	if c.big {
		return false
	}
	c.nodes++
	if c.nodes > maxNodes {
		c.big = true
		c.add(path, "the file expands to more than %d YAML nodes (aliases?)", maxNodes)
		return false
	}
	if depth > maxDepth {
		c.add(path, "nested too deeply (alias cycle?)")
		return false
	}
	return true
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; i < maxDepth && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

type pair struct {
	key string
	val *yaml.Node
}

// mappingPairs flattens a mapping node: explicit keys in order, then keys
// brought in by merge keys ("<<: *defaults") that are not set explicitly.
// Repeated explicit keys are errors.
func mappingPairs(n *yaml.Node, path string, c *errs, depth int) []pair {
	var out []pair
	seen := map[string]bool{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			c.add(path, "mapping keys must be scalars")
			continue
		}
		if seen[k.Value] {
			c.add(join(path, k.Value), "duplicate key")
			continue
		}
		seen[k.Value] = true
		out = append(out, pair{k.Value, v})
	}
	for _, m := range merges {
		if !c.visit(path, depth+1) {
			return out
		}
		m = deref(m)
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, src := range srcs {
			src = deref(src)
			if src.Kind != yaml.MappingNode {
				c.add(join(path, "<<"), "a merge key needs a mapping or a list of mappings")
				continue
			}
			for _, p := range mappingPairs(src, path, c, depth+1) {
				if !seen[p.key] {
					seen[p.key] = true
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// decodeNode decodes n into v, reporting problems under path.
func decodeNode(n *yaml.Node, v reflect.Value, path string, c *errs, depth int) {
	if !c.visit(path, depth) {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			c.add(path, "unresolved alias")
			return
		}
		decodeNode(n.Alias, v, path, c, depth+1)
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // leave the zero value
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		decodeNode(n, p.Elem(), path, c, depth+1)
		v.Set(p)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			c.shape(path, "expected a mapping")
			return
		}
		t := v.Type()
		for _, p := range mappingPairs(n, path, c, depth) {
			fi := fieldIndex(t, p.key)
			if fi < 0 {
				c.add(join(path, p.key), "unknown field")
				continue
			}
			decodeNode(p.val, v.Field(fi), join(path, p.key), c, depth+1)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.shape(path, "expected a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			decodeNode(item, s.Index(i), path+"["+strconv.Itoa(i)+"]", c, depth+1)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.shape(path, "expected a mapping")
			return
		}
		m := reflect.MakeMap(v.Type())
		for _, p := range mappingPairs(n, path, c, depth) {
			val := reflect.New(v.Type().Elem()).Elem()
			decodeNode(p.val, val, join(path, p.key), c, depth+1)
			m.SetMapIndex(reflect.ValueOf(p.key), val)
		}
		v.Set(m)
	default:
		if n.Kind != yaml.ScalarNode {
			c.shape(path, "expected %s", kindName(v.Kind()))
			return
		}
		if v.Kind() == reflect.String {
			// Accept unquoted scalars (a version 2023-06-01, an all-digit
			// name) as the strings users mean.
			v.SetString(n.Value)
			return
		}
		switch v.Kind() {
		case reflect.Int, reflect.Int64, reflect.Int32:
			if n.ShortTag() == "!!float" && v.Type() != reflect.TypeFor[time.Duration]() {
				// yaml would truncate 1.5 to 1.
				c.shape(path, "expected an integer, got %q", n.Value)
				return
			}
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			if v.Type() == reflect.TypeFor[time.Duration]() {
				c.shape(path, "expected a duration such as 90s or 5m, got %q", n.Value)
				return
			}
			c.shape(path, "expected %s, got %q", kindName(v.Kind()), n.Value)
		}
	}
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Bool:
		return "a boolean"
	}
	return "a " + k.String()
}

// fieldIndex finds the struct field whose yaml tag is key.
func fieldIndex(t reflect.Type, key string) int {
	for i := range t.NumField() {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag == key {
			return i
		}
	}
	return -1
}

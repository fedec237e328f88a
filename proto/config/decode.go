package config

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// FieldError is one problem in a configuration file, at a field path such
// as "providers[1].credentials.api_key_env".
type FieldError struct {
	Path string
	Msg  string
}

// Error implements error.
func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errors is every problem found in a file, in document order.
type Errors []*FieldError

// Error lists the problems, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// errs collects field errors.
type errs struct{ list Errors }

func (c *errs) add(path, format string, args ...any) {
	c.list = append(c.list, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// decodeFile decodes YAML strictly: one document, a mapping at the root,
// no unknown fields anywhere, every type mismatch reported with its path.
func decodeFile(data []byte, c *errs) *File {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
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
		c.add("", "the file must hold one YAML document")
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
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

// decodeNode decodes n into v, reporting problems under path.
func decodeNode(n *yaml.Node, v reflect.Value, path string, c *errs, depth int) {
	if depth > 32 {
		c.add(path, "nesting too deep")
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			c.add(path, "unresolved alias")
			return
		}
		n = n.Alias
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
			c.add(path, "expected a mapping")
			return
		}
		t := v.Type()
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if seen[key] {
				c.add(join(path, key), "duplicate key")
				continue
			}
			seen[key] = true
			fi := fieldIndex(t, key)
			if fi < 0 {
				c.add(join(path, key), "unknown field")
				continue
			}
			decodeNode(n.Content[i+1], v.Field(fi), join(path, key), c, depth+1)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.add(path, "expected a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			decodeNode(item, s.Index(i), path+"["+strconv.Itoa(i)+"]", c, depth+1)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			c.add(path, "expected a mapping")
			return
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			val := reflect.New(v.Type().Elem()).Elem()
			decodeNode(n.Content[i+1], val, join(path, key), c, depth+1)
			m.SetMapIndex(reflect.ValueOf(key), val)
		}
		v.Set(m)
	default:
		if n.Kind != yaml.ScalarNode {
			c.add(path, "expected a %s", kindName(v.Kind()))
			return
		}
		if v.Kind() == reflect.String && n.Tag != "!!str" {
			// Accept unquoted scalars (e.g. a version "2023-06-01" or an
			// all-digit key name) as strings, as users expect.
			v.SetString(n.Value)
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			c.add(path, "expected a %s, got %q", kindName(v.Kind()), n.Value)
		}
	}
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "string"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "integer"
	case reflect.Bool:
		return "boolean"
	}
	return k.String()
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

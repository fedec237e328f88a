package gemini

import (
	"strings"

	"github.com/tidwall/gjson"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/jsonenc"
)

// Gemini's function parameters and responseSchema take a Schema object, "a
// select subset of an OpenAPI 3.0 schema object" (ai.google.dev/api/caching#Schema),
// not JSON Schema. ConvertSchema rewrites the JSON Schema that OpenAI
// clients send into that subset:
//
//   - kept: type (upper-cased), description, enum (strings), properties,
//     required (only names that are properties), items, nullable,
//     minItems/maxItems, minLength/maxLength, minProperties/maxProperties,
//     minimum/maximum, pattern, default, anyOf;
//   - type arrays and anyOf/oneOf with a "null" member become nullable;
//     other type arrays become anyOf; oneOf becomes anyOf (looser: Gemini
//     has no exclusive union);
//   - allOf of one schema is inlined; allOf of object schemas is merged;
//   - local $ref (#/$defs/…, #/definitions/…, #) is inlined; recursive
//     references are refused (Gemini schemas cannot refer to themselves);
//   - const becomes a one-value enum; enum values that are not strings
//     are turned into strings for string schemas and dropped (listed in the
//     description) otherwise; title becomes the description when there is
//     none;
//   - format is kept where Gemini documents it (float/double, int32/int64,
//     enum/date-time) and otherwise moved into the description;
//   - dropped: $schema, $id, $comment, $defs, definitions,
//     additionalProperties, patternProperties, unevaluated*, dependent*,
//     propertyNames, if/then/else, not, contains, uniqueItems, multipleOf,
//     exclusiveMinimum/Maximum, readOnly/writeOnly, deprecated, examples
//     (the first becomes example), strict and any unknown keyword.

// maxSchemaDepth bounds nesting (and $ref inlining).
const maxSchemaDepth = 32

// maxSchemaOut bounds the converted schema (a $ref used many times can
// multiply its size).
const maxSchemaOut = 1 << 20

// ConvertSchema converts the JSON Schema schema (JSON text) into Gemini's
// Schema subset and appends it to dst. param names the schema in errors
// (e.g. "tools[0].function.parameters").
func ConvertSchema(dst []byte, schema, param string) ([]byte, *translate.Error) {
	root := gjson.Parse(schema)
	c := schemaConv{root: root, param: param, start: len(dst)}
	return c.convert(dst, root, 0, nil)
}

type schemaConv struct {
	root  gjson.Result
	param string
	refs  []string // $refs being inlined, to detect recursion
	start int
}

func (c *schemaConv) fail(msg string) *translate.Error {
	return &translate.Error{Code: translate.CodeInvalidRequest, Param: c.param, OpenAICode: "invalid_schema",
		Message: "Invalid schema for '" + c.param + "' (Gemini accepts a subset of JSON Schema): " + msg}
}

// view is one schema object with its $ref, allOf and nullable members
// resolved: the keywords that apply, gathered from several objects.
type schemaView struct {
	types       []string // JSON Schema type names, without "null"
	nullable    bool
	description string
	title       string
	format      string
	enum        []gjson.Result
	hasEnum     bool
	props       []gjson.Result // key, value pairs
	required    []gjson.Result
	items       gjson.Result
	anyOf       []gjson.Result
	scalars     []gjson.Result // key, value pairs copied as is
	example     gjson.Result
}

// gather adds the keywords of s to v. depth bounds $ref chains.
func (c *schemaConv) gather(v *schemaView, s gjson.Result, depth int) *translate.Error {
	if depth > maxSchemaDepth {
		return c.fail("schema nested too deeply")
	}
	switch s.Type {
	case gjson.True:
		return nil
	case gjson.False:
		return c.fail("a 'false' schema cannot be expressed")
	}
	if !s.IsObject() {
		return c.fail("a schema must be an object")
	}
	if ref := s.Get(`\$ref`); ref.Exists() {
		target, err := c.resolve(ref)
		if err != nil {
			return err
		}
		c.refs = append(c.refs, ref.Str)
		err = c.gather(v, target, depth+1)
		c.refs = c.refs[:len(c.refs)-1]
		if err != nil {
			return err
		}
	}
	var bad *translate.Error
	s.ForEach(func(k, val gjson.Result) bool {
		switch k.Str {
		case "type":
			switch {
			case val.Type == gjson.String:
				bad = v.addType(c, val.Str)
			case val.IsArray():
				val.ForEach(func(_, t gjson.Result) bool {
					bad = v.addType(c, t.String())
					return bad == nil
				})
			default:
				bad = c.fail("'type' must be a string or an array of strings")
			}
		case "nullable":
			if val.Type == gjson.True {
				v.nullable = true
			}
		case "description":
			if val.Type == gjson.String && v.description == "" {
				v.description = val.Str
			}
		case "title":
			if val.Type == gjson.String && v.title == "" {
				v.title = val.Str
			}
		case "format":
			if val.Type == gjson.String {
				v.format = val.Str
			}
		case "const":
			v.enum, v.hasEnum = []gjson.Result{val}, true
		case "enum":
			if !val.IsArray() {
				bad = c.fail("'enum' must be an array")
				return false
			}
			v.enum, v.hasEnum = v.enum[:0], true
			val.ForEach(func(_, e gjson.Result) bool {
				if e.Type == gjson.Null {
					v.nullable = true
				} else {
					v.enum = append(v.enum, e)
				}
				return true
			})
		case "properties":
			if !val.IsObject() {
				bad = c.fail("'properties' must be an object")
				return false
			}
			val.ForEach(func(pk, pv gjson.Result) bool {
				for i := 0; i < len(v.props); i += 2 {
					if v.props[i].Str == pk.Str {
						v.props[i+1] = pv
						return true
					}
				}
				v.props = append(v.props, pk, pv)
				return true
			})
		case "required":
			if val.IsArray() {
				val.ForEach(func(_, r gjson.Result) bool {
					if r.Type == gjson.String {
						v.required = append(v.required, r)
					}
					return true
				})
			}
		case "items":
			v.items = val // an array (tuple form) becomes anyOf below
		case "prefixItems":
			if !v.items.Exists() {
				v.items = val
			}
		case "anyOf", "oneOf":
			if !val.IsArray() {
				bad = c.fail("'" + k.Str + "' must be an array")
				return false
			}
			val.ForEach(func(_, alt gjson.Result) bool {
				if isNullSchema(alt) {
					v.nullable = true
				} else {
					v.anyOf = append(v.anyOf, alt)
				}
				return true
			})
		case "allOf":
			if !val.IsArray() {
				bad = c.fail("'allOf' must be an array")
				return false
			}
			val.ForEach(func(_, sub gjson.Result) bool {
				bad = c.gather(v, sub, depth+1)
				return bad == nil
			})
		case "minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties", "minimum", "maximum":
			if val.Type == gjson.Number {
				v.scalars = append(v.scalars, k, val)
			}
		case "pattern":
			if val.Type == gjson.String {
				v.scalars = append(v.scalars, k, val)
			}
		case "default":
			v.scalars = append(v.scalars, k, val)
		case "example":
			v.example = val
		case "examples":
			if !v.example.Exists() && val.IsArray() {
				v.example = val.Get("0")
			}
		}
		return bad == nil
	})
	return bad
}

// isNullSchema reports whether s is {"type":"null"}.
func isNullSchema(s gjson.Result) bool {
	t := s.Get("type")
	return s.IsObject() && t.Str == "null" && len(s.Map()) == 1
}

func (v *schemaView) addType(c *schemaConv, t string) *translate.Error {
	switch t {
	case "null":
		v.nullable = true
		return nil
	case "string", "number", "integer", "boolean", "array", "object":
		for _, have := range v.types {
			if have == t {
				return nil
			}
		}
		v.types = append(v.types, t)
		return nil
	}
	return c.fail("unknown type '" + t + "'")
}

// resolve finds the target of a local $ref.
func (c *schemaConv) resolve(ref gjson.Result) (gjson.Result, *translate.Error) {
	r := ref.Str
	for _, active := range c.refs {
		if active == r {
			return gjson.Result{}, c.fail("recursive '$ref' " + r + " cannot be expressed")
		}
	}
	if r == "#" {
		return c.root, nil
	}
	if !strings.HasPrefix(r, "#/") {
		return gjson.Result{}, c.fail("only local '$ref's (#/$defs/…) can be inlined, not " + r)
	}
	cur := c.root
	for _, seg := range strings.Split(r[2:], "/") {
		seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		if !cur.IsObject() {
			cur = gjson.Result{}
			break
		}
		cur = cur.Get(gjson.Escape(seg))
	}
	if !cur.Exists() {
		return gjson.Result{}, c.fail("'$ref' " + r + " points nowhere")
	}
	return cur, nil
}

// geminiType maps a JSON Schema type to Gemini's Type enum.
func geminiType(t string) string {
	switch t {
	case "string":
		return "STRING"
	case "number":
		return "NUMBER"
	case "integer":
		return "INTEGER"
	case "boolean":
		return "BOOLEAN"
	case "array":
		return "ARRAY"
	case "object":
		return "OBJECT"
	}
	return "TYPE_UNSPECIFIED"
}

// formatKept reports whether Gemini documents format f for type t.
func formatKept(t, f string) bool {
	switch t {
	case "number":
		return f == "float" || f == "double"
	case "integer":
		return f == "int32" || f == "int64"
	case "string":
		return f == "enum" || f == "date-time"
	}
	return false
}

// convert appends the Gemini form of schema s.
func (c *schemaConv) convert(dst []byte, s gjson.Result, depth int, extraDesc []string) ([]byte, *translate.Error) {
	if depth > maxSchemaDepth {
		return dst, c.fail("schema nested too deeply")
	}
	if len(dst)-c.start > maxSchemaOut {
		return dst, c.fail("schema too large once its '$ref's are inlined")
	}
	var v schemaView
	if err := c.gather(&v, s, depth); err != nil {
		return dst, err
	}
	// Refs met while gathering stay active while converting children, so
	// that recursion through properties is detected too.
	refs := len(c.refs)
	if ref := s.Get(`\$ref`); ref.Exists() {
		c.refs = append(c.refs, ref.Str)
	}
	defer func() { c.refs = c.refs[:refs] }()

	desc := v.description
	if desc == "" {
		desc = v.title
	}
	for _, d := range extraDesc {
		desc = joinDesc(desc, d)
	}

	// A single non-null alternative is inlined into this schema.
	if len(v.anyOf) == 1 && len(v.types) == 0 {
		alt := v.anyOf[0]
		var more []string
		if desc != "" {
			more = append(more, desc)
		}
		start := len(dst)
		out, err := c.convert(dst, alt, depth+1, nil)
		if err != nil {
			return out, err
		}
		// Re-open the object to add nullable/description of the wrapper.
		return c.patch(out, start, v.nullable, more)
	}
	if len(v.types) > 1 && len(v.anyOf) == 0 {
		// ["string","integer"] → anyOf of the single types, carrying the
		// keywords that apply to each.
		dst = append(dst, `{"anyOf":[`...)
		for i, t := range v.types {
			if i > 0 {
				dst = append(dst, ',')
			}
			one := v
			one.types = []string{t}
			one.nullable = false
			var err *translate.Error
			if dst, err = c.emit(dst, &one, "", depth); err != nil {
				return dst, err
			}
		}
		dst = append(dst, ']')
		if v.nullable {
			dst = append(dst, `,"nullable":true`...)
		}
		if desc != "" {
			dst = append(dst, `,"description":`...)
			dst = jsonenc.AppendString(dst, desc)
		}
		return append(dst, '}'), nil
	}
	return c.emit(dst, &v, desc, depth)
}

// patch adds nullable and description to the object just appended at
// dst[start:], when it does not already say so.
func (c *schemaConv) patch(dst []byte, start int, nullable bool, desc []string) ([]byte, *translate.Error) {
	obj := gjson.ParseBytes(dst[start:])
	if nullable && !obj.Get("nullable").Bool() {
		dst = dst[:len(dst)-1]
		if len(dst) > start+1 {
			dst = append(dst, ',')
		}
		dst = append(dst, `"nullable":true}`...)
	}
	if len(desc) > 0 && !obj.Get("description").Exists() {
		dst = dst[:len(dst)-1]
		if len(dst) > start+1 {
			dst = append(dst, ',')
		}
		dst = append(dst, `"description":`...)
		dst = jsonenc.AppendString(dst, strings.Join(desc, " "))
		dst = append(dst, '}')
	}
	return dst, nil
}

func joinDesc(a, b string) string {
	if a == "" {
		return b
	}
	return a + " (" + b + ")"
}

// emit appends the Gemini schema for a gathered view with at most one type.
func (c *schemaConv) emit(dst []byte, v *schemaView, desc string, depth int) ([]byte, *translate.Error) {
	t := ""
	if len(v.types) == 1 {
		t = v.types[0]
	}
	if t == "" {
		switch {
		case len(v.props) > 0:
			t = "object"
		case v.items.Exists():
			t = "array"
		case v.hasEnum && allStrings(v.enum):
			t = "string"
		}
	}
	if v.format != "" && !formatKept(t, v.format) {
		desc = joinDesc(desc, "format: "+v.format)
	}
	var enumDesc string
	if v.hasEnum && t != "" && t != "string" {
		// Gemini enums are strings: keep the values as a hint.
		var b strings.Builder
		for i, e := range v.enum {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(e.Raw)
		}
		enumDesc = "allowed values: " + b.String()
		desc = joinDesc(desc, enumDesc)
	}

	dst = append(dst, '{')
	n := 0
	key := func(k string) {
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, '"')
		dst = append(dst, k...)
		dst = append(dst, '"', ':')
	}
	if len(v.anyOf) > 0 {
		key("anyOf")
		dst = append(dst, '[')
		for i, alt := range v.anyOf {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err *translate.Error
			if dst, err = c.convert(dst, alt, depth+1, nil); err != nil {
				return dst, err
			}
		}
		dst = append(dst, ']')
	}
	if t != "" {
		key("type")
		dst = append(dst, '"')
		dst = append(dst, geminiType(t)...)
		dst = append(dst, '"')
	}
	if v.format != "" && formatKept(t, v.format) {
		key("format")
		dst = jsonenc.AppendString(dst, v.format)
	}
	if desc != "" {
		key("description")
		dst = jsonenc.AppendString(dst, desc)
	}
	if v.nullable {
		key("nullable")
		dst = append(dst, "true"...)
	}
	if v.hasEnum && (t == "" || t == "string") && len(v.enum) > 0 {
		key("enum")
		dst = append(dst, '[')
		for i, e := range v.enum {
			if i > 0 {
				dst = append(dst, ',')
			}
			if e.Type == gjson.String {
				dst = append(dst, e.Raw...)
			} else {
				dst = jsonenc.AppendString(dst, e.Raw)
			}
		}
		dst = append(dst, ']')
	}
	if len(v.props) > 0 {
		key("properties")
		dst = append(dst, '{')
		for i := 0; i < len(v.props); i += 2 {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, v.props[i].Raw...)
			dst = append(dst, ':')
			var err *translate.Error
			if dst, err = c.convert(dst, v.props[i+1], depth+1, nil); err != nil {
				return dst, err
			}
		}
		dst = append(dst, '}')
		first := true
		for i, r := range v.required {
			if !hasProp(v.props, r.Str) || repeated(v.required[:i], r.Str) {
				continue
			}
			if first {
				key("required")
				dst = append(dst, '[')
				first = false
			} else {
				dst = append(dst, ',')
			}
			dst = append(dst, r.Raw...)
		}
		if !first {
			dst = append(dst, ']')
		}
	}
	if v.items.Exists() && (t == "array" || t == "") {
		key("items")
		var err *translate.Error
		if v.items.IsArray() {
			// Tuple items: any of the listed schemas.
			alts := v.items.Array()
			switch len(alts) {
			case 0:
				dst = append(dst, "{}"...)
			case 1:
				dst, err = c.convert(dst, alts[0], depth+1, nil)
			default:
				dst = append(dst, `{"anyOf":[`...)
				for i, a := range alts {
					if i > 0 {
						dst = append(dst, ',')
					}
					if dst, err = c.convert(dst, a, depth+1, nil); err != nil {
						return dst, err
					}
				}
				dst = append(dst, "]}"...)
			}
		} else {
			dst, err = c.convert(dst, v.items, depth+1, nil)
		}
		if err != nil {
			return dst, err
		}
	}
	for i := 0; i < len(v.scalars); i += 2 {
		k, val := v.scalars[i].Str, v.scalars[i+1]
		if !scalarApplies(k, t) {
			continue
		}
		key(k)
		switch k {
		case "minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties":
			// int64 fields: Google's JSON accepts numbers; fractions are
			// refused, so they are rounded down.
			dst = jsonenc.AppendInt(dst, val.Int())
		default:
			dst = append(dst, val.Raw...)
		}
	}
	if v.example.Exists() {
		key("example")
		dst = append(dst, v.example.Raw...)
	}
	return append(dst, '}'), nil
}

// scalarApplies reports whether keyword k is meaningful for type t (Gemini
// refuses, e.g., minLength on a number).
func scalarApplies(k, t string) bool {
	switch k {
	case "minItems", "maxItems":
		return t == "array"
	case "minLength", "maxLength", "pattern":
		return t == "string"
	case "minProperties", "maxProperties":
		return t == "object"
	case "minimum", "maximum":
		return t == "number" || t == "integer"
	}
	return true
}

func allStrings(es []gjson.Result) bool {
	for _, e := range es {
		if e.Type != gjson.String {
			return false
		}
	}
	return true
}

func hasProp(props []gjson.Result, name string) bool {
	for i := 0; i < len(props); i += 2 {
		if props[i].Str == name {
			return true
		}
	}
	return false
}

// repeated reports whether name is in list.
func repeated(list []gjson.Result, name string) bool {
	for _, x := range list {
		if x.Str == name {
			return true
		}
	}
	return false
}

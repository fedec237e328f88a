package gemini

import "testing"

func TestConvertSchema(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"basic object", `{"type":"object","properties":{"a":{"type":"string","description":"A"},"b":{"type":"integer","format":"int64"}},"required":["a","zz","a"]}`,
			`{"type":"OBJECT","properties":{"a":{"type":"STRING","description":"A"},"b":{"type":"INTEGER","format":"int64"}},"required":["a"]}`},
		{"drops $schema and additionalProperties", `{"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"x","type":"object","additionalProperties":false,"properties":{"a":{"type":"number","exclusiveMinimum":0,"multipleOf":2}}}`,
			`{"type":"OBJECT","properties":{"a":{"type":"NUMBER"}}}`},
		{"nullable type array", `{"type":["string","null"]}`, `{"type":"STRING","nullable":true}`},
		{"multi type array", `{"type":["string","integer"]}`, `{"anyOf":[{"type":"STRING"},{"type":"INTEGER"}]}`},
		{"anyOf with null", `{"anyOf":[{"type":"integer"},{"type":"null"}],"description":"count"}`, `{"type":"INTEGER","nullable":true,"description":"count"}`},
		{"oneOf to anyOf", `{"oneOf":[{"type":"integer"},{"type":"string"}]}`, `{"anyOf":[{"type":"INTEGER"},{"type":"STRING"}]}`},
		{"const", `{"const":"fixed"}`, `{"type":"STRING","enum":["fixed"]}`},
		{"enum with null", `{"type":"string","enum":["a","b",null]}`, `{"type":"STRING","nullable":true,"enum":["a","b"]}`},
		{"integer enum to description", `{"type":"integer","enum":[1,2]}`, `{"type":"INTEGER","description":"allowed values: 1, 2"}`},
		{"format moved to description", `{"type":"string","format":"email","description":"mail"}`, `{"type":"STRING","description":"mail (format: email)"}`},
		{"date-time kept", `{"type":"string","format":"date-time"}`, `{"type":"STRING","format":"date-time"}`},
		{"title as description", `{"type":"string","title":"Name"}`, `{"type":"STRING","description":"Name"}`},
		{"ref inlined", `{"type":"object","properties":{"p":{"$ref":"#/$defs/pt"}},"$defs":{"pt":{"type":"object","properties":{"x":{"type":"number"}},"required":["x"]}}}`,
			`{"type":"OBJECT","properties":{"p":{"type":"OBJECT","properties":{"x":{"type":"NUMBER"}},"required":["x"]}}}`},
		{"definitions ref", `{"type":"array","items":{"$ref":"#/definitions/s"},"definitions":{"s":{"type":"string"}},"minItems":1,"maxItems":3,"uniqueItems":true}`,
			`{"type":"ARRAY","items":{"type":"STRING"},"minItems":1,"maxItems":3}`},
		{"allOf merged", `{"allOf":[{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]},{"properties":{"b":{"type":"boolean"}}}]}`,
			`{"type":"OBJECT","properties":{"a":{"type":"STRING"},"b":{"type":"BOOLEAN"}},"required":["a"]}`},
		{"constraints kept per type", `{"type":"string","minLength":1,"maxLength":5,"pattern":"^a","minimum":3}`, `{"type":"STRING","minLength":1,"maxLength":5,"pattern":"^a"}`},
		{"numbers", `{"type":"number","minimum":0,"maximum":1.5,"default":1,"examples":[0.5]}`, `{"type":"NUMBER","minimum":0,"maximum":1.5,"default":1,"example":0.5}`},
		{"tuple items", `{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}]}`, `{"type":"ARRAY","items":{"anyOf":[{"type":"STRING"},{"type":"INTEGER"}]}}`},
		{"inferred object", `{"properties":{"a":{"type":"string"}}}`, `{"type":"OBJECT","properties":{"a":{"type":"STRING"}}}`},
		{"nullable ref", `{"anyOf":[{"$ref":"#/$defs/a"},{"type":"null"}],"$defs":{"a":{"type":"string"}}}`, `{"type":"STRING","nullable":true}`},
		{"drops conditionals", `{"type":"object","properties":{"a":{"type":"string"}},"if":{},"then":{},"else":{},"not":{},"patternProperties":{"x":{}},"unevaluatedProperties":false,"propertyNames":{}}`,
			`{"type":"OBJECT","properties":{"a":{"type":"STRING"}}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := ConvertSchema(nil, c.in, "p")
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if !jsonEqual(string(out), c.want) {
				t.Errorf("\n got %s\nwant %s", out, c.want)
			}
		})
	}
}

func TestConvertSchemaRefusals(t *testing.T) {
	for _, in := range []string{
		`{"$ref":"#"}`,
		`{"type":"object","properties":{"a":{"$ref":"#/$defs/n"}},"$defs":{"n":{"properties":{"b":{"$ref":"#/$defs/n"}}}}}`,
		`{"$ref":"https://example.com/s.json"}`,
		`{"$ref":"#/$defs/missing"}`,
		`{"type":"weird"}`,
		`false`,
		`[1]`,
		`{"properties":{"a":false}}`,
	} {
		if out, err := ConvertSchema(nil, in, "tools[0].function.parameters"); err == nil {
			t.Errorf("%s accepted: %s", in, out)
		} else if err.Param != "tools[0].function.parameters" {
			t.Errorf("%s: param %q", in, err.Param)
		}
	}
}

// FuzzConvertSchema: any input converts to valid JSON or a 400, never a
// panic.
func FuzzConvertSchema(f *testing.F) {
	f.Add(`{"type":"object","properties":{"a":{"$ref":"#/$defs/x"}},"$defs":{"x":{"anyOf":[{"type":"string"},{"type":"null"}]}}}`)
	f.Add(`{"allOf":[{"$ref":"#"}]}`)
	f.Add(`{"type":["integer","string","null"],"enum":[1,"a",null]}`)
	f.Fuzz(func(t *testing.T, in string) {
		out, err := ConvertSchema(nil, in, "p")
		if err == nil && len(out) > 0 && !jsonValid(out) {
			t.Fatalf("invalid output %s for %s", out, in)
		}
	})
}

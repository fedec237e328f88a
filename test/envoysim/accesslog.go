package envoysim

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// accessLogFormat is one stdout access logger: either JSON (keys → template)
// or text (one template).
type accessLogFormat struct {
	json map[string]*logTemplate
	keys []string // json key order as configured
	text *logTemplate
}

// logTemplate is literal text interleaved with commands.
type logTemplate struct {
	parts []logPart
}

type logPart struct {
	lit string
	cmd *logCommand
}

type logCommand struct {
	name string // START_TIME, REQ, ...
	arg  string // header name or ns:key
	// for DYNAMIC_METADATA
	ns   string
	path []string
}

var commandRE = regexp.MustCompile(`%([A-Z_]+)(\(([^)]*)\))?(:[0-9]+)?%`)

// scanTemplate splits s into literal text and commands; mk builds (and
// vets) each command from its text, name, argument and whether it has a
// length limit.
func scanTemplate(s string, mk func(text, name, arg string, limited bool) (*logCommand, error)) (*logTemplate, error) {
	t := &logTemplate{}
	last := 0
	for _, m := range commandRE.FindAllStringSubmatchIndex(s, -1) {
		if m[0] > last {
			t.parts = append(t.parts, logPart{lit: s[last:m[0]]})
		}
		arg := ""
		if m[6] >= 0 {
			arg = s[m[6]:m[7]]
		}
		c, err := mk(s[m[0]:m[1]], s[m[2]:m[3]], arg, m[8] >= 0)
		if err != nil {
			return nil, err
		}
		t.parts = append(t.parts, logPart{cmd: c})
		last = m[1]
	}
	if last < len(s) {
		t.parts = append(t.parts, logPart{lit: s[last:]})
	}
	return t, nil
}

func parseTemplate(path, s string) (*logTemplate, error) {
	return scanTemplate(s, func(text, name, arg string, limited bool) (*logCommand, error) {
		if limited {
			return nil, unsupported(path, "length limits on access log commands (%s) are not modelled", text)
		}
		c := &logCommand{name: name, arg: arg}
		switch name {
		case "START_TIME":
			if arg != "" {
				return nil, unsupported(path, "START_TIME with a custom format is not modelled")
			}
		case "RESPONSE_CODE", "RESPONSE_FLAGS", "DURATION", "UPSTREAM_CLUSTER", "PROTOCOL", "RESPONSE_CODE_DETAILS", "TRACE_ID":
			if arg != "" {
				return nil, unsupported(path, "%%%s%% takes no argument", name)
			}
		case "REQ", "RESP":
			if arg == "" || strings.Contains(arg, "?") {
				return nil, unsupported(path, "%%%s(%s)%% form is not modelled (one header name only)", name, arg)
			}
			c.arg = strings.ToLower(arg)
		case "DYNAMIC_METADATA":
			parts := strings.Split(arg, ":")
			if len(parts) < 1 || parts[0] == "" {
				return nil, unsupported(path, "DYNAMIC_METADATA needs a namespace")
			}
			c.ns, c.path = parts[0], parts[1:]
		default:
			return nil, unsupported(path, "access log command %%%s%% is not modelled", name)
		}
		return c, nil
	})
}

func buildAccessLog(path string, al *accesslogv3.AccessLog) (*accessLogFormat, error) {
	if err := checkFields(path, al, "name", "typed_config"); err != nil {
		return nil, err
	}
	var so streamv3.StdoutAccessLog
	if err := unpack(path+".typed_config", al.GetTypedConfig(), &so); err != nil {
		return nil, err
	}
	lf := so.GetLogFormat()
	if lf == nil {
		return nil, unsupported(path+".typed_config", "the default access log format is not modelled; give log_format")
	}
	if err := checkFields(path+".typed_config.log_format", lf, "json_format", "text_format", "text_format_source"); err != nil {
		return nil, err
	}
	f := &accessLogFormat{}
	switch {
	case lf.GetJsonFormat() != nil:
		f.json = map[string]*logTemplate{}
		for k, v := range lf.GetJsonFormat().GetFields() {
			s, ok := v.GetKind().(*structpb.Value_StringValue)
			if !ok {
				return nil, unsupported(path+".json_format."+k, "only string values are modelled")
			}
			t, err := parseTemplate(path+".json_format."+k, s.StringValue)
			if err != nil {
				return nil, err
			}
			f.json[k] = t
			f.keys = append(f.keys, k)
		}
	case lf.GetTextFormatSource() != nil:
		src := lf.GetTextFormatSource()
		if src.GetInlineString() == "" {
			return nil, unsupported(path+".text_format_source", "only inline_string is modelled")
		}
		t, err := parseTemplate(path+".text_format_source", src.GetInlineString())
		if err != nil {
			return nil, err
		}
		f.text = t
	default:
		t, err := parseTemplate(path+".text_format", lf.GetTextFormat())
		if err != nil {
			return nil, err
		}
		f.text = t
	}
	return f, nil
}

// logRecord is what an access log line can be built from.
type logRecord struct {
	start       time.Time
	duration    time.Duration
	reqHeaders  hmap
	respHeaders hmap
	status      int
	flags       []string
	cluster     string
	protocol    string
	details     string
	metadata    map[string]*structpb.Struct
	traceID     string // the active span's trace id; "" for a NullSpan
}

// value evaluates a command; nil means "absent" (JSON null, "-" in text).
func (r *logRecord) value(c *logCommand) any {
	switch c.name {
	case "START_TIME":
		return r.start.UTC().Format("2006-01-02T15:04:05.000Z")
	case "REQ":
		if v, ok := r.reqHeaders.get(c.arg); ok {
			return v
		}
		return nil
	case "RESP":
		if v, ok := r.respHeaders.get(c.arg); ok {
			return v
		}
		return nil
	case "RESPONSE_CODE":
		return r.status
	case "RESPONSE_CODE_DETAILS":
		if r.details == "" {
			return nil
		}
		return r.details
	case "RESPONSE_FLAGS":
		if len(r.flags) == 0 {
			return "-"
		}
		return strings.Join(r.flags, ",")
	case "DURATION":
		return r.duration.Milliseconds()
	case "UPSTREAM_CLUSTER":
		if r.cluster == "" {
			return nil
		}
		return r.cluster
	case "PROTOCOL":
		return r.protocol
	case "TRACE_ID":
		// http_specific_formatter.cc TraceIDFormatter: the active span's
		// getTraceId(), unspecified when empty (no tracing, NullSpan).
		if r.traceID == "" {
			return nil
		}
		return r.traceID
	case "DYNAMIC_METADATA":
		s := r.metadata[c.ns]
		if s == nil {
			return nil
		}
		var v any = s.AsMap()
		for _, p := range c.path {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			if v, ok = m[p]; !ok {
				return nil
			}
		}
		return v
	}
	return nil
}

func (t *logTemplate) evalJSON(r *logRecord) any {
	if len(t.parts) == 1 && t.parts[0].cmd != nil {
		// A lone command keeps its type, as Envoy's JSON formatter does.
		return r.value(t.parts[0].cmd)
	}
	return t.evalText(r)
}

func (t *logTemplate) evalText(r *logRecord) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.cmd == nil {
			b.WriteString(p.lit)
			continue
		}
		v := r.value(p.cmd)
		switch x := v.(type) {
		case nil:
			b.WriteString("-")
		case string:
			b.WriteString(x)
		case int:
			b.WriteString(strconv.Itoa(x))
		case int64:
			b.WriteString(strconv.FormatInt(x, 10))
		default:
			js, err := json.Marshal(x)
			if err != nil {
				b.WriteString("-")
			} else {
				b.Write(js)
			}
		}
	}
	return b.String()
}

// line renders one access log line (without the newline) and, for JSON
// formats, the parsed object.
func (f *accessLogFormat) line(r *logRecord) (string, map[string]any, error) {
	if f.text != nil {
		return f.text.evalText(r), nil, nil
	}
	obj := make(map[string]any, len(f.json))
	for k, t := range f.json {
		obj[k] = t.evalJSON(r)
	}
	js, err := json.Marshal(obj)
	if err != nil {
		return "", nil, fmt.Errorf("envoysim: access log: %w", err)
	}
	// Round-trip so that assertions see the same types a parser of the
	// written line would (numbers as float64).
	var parsed map[string]any
	if err := json.Unmarshal(js, &parsed); err != nil {
		return "", nil, fmt.Errorf("envoysim: access log: %w", err)
	}
	return string(js), parsed, nil
}

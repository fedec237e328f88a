package envoysim

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// The HCM local_reply_config (source/common/local_reply/local_reply.cc):
// every local reply (the router's 503/504, the 413 of a full buffer, an
// ext_proc ImmediateResponse, ...) is passed to rewrite before it enters the
// encoder chain or goes straight to the client. The first mapper whose
// filter matches may replace the status, the body and the body format; the
// body is then rendered with the mapper's body_format_override, else the
// config's body_format, else "%LOCAL_REPLY_BODY%" as text/plain.
// Http::Utility::prepareLocalReply then sets content-type to the format's
// content type only if no content-type was set by the reply's own headers or
// the body changed.

type localReplyConfig struct {
	mappers []*replyMapper
	format  *replyFormat // nil: the default format (body unchanged, text/plain)
}

type replyMapper struct {
	filter replyFilter
	status int     // 0: keep
	body   *string // nil: keep
	format *replyFormat
	add    [][2]string // headers_to_add, set on the reply (OVERWRITE_IF_EXISTS_OR_ADD)
}

// replyCtx is what a filter and a format see of one local reply.
type replyCtx struct {
	status   int
	body     string
	details  string
	flags    []string
	metadata map[string]*structpb.Struct
	req      hmap
	add      [][2]string // headers the matching mapper adds
}

type replyFilter func(*replyCtx) bool

// replyFormat is a SubstitutionFormatString: a json_format tree or a text
// template, and the content type it produces.
type replyFormat struct {
	json        *structpb.Struct
	text        *logTemplate
	contentType string
}

// buildLocalReply models the subset of LocalReplyConfig that the shipped
// configurations use and refuses everything else.
func buildLocalReply(path string, c *hcmv3.LocalReplyConfig) (*localReplyConfig, error) {
	if err := checkFields(path, c, "mappers", "body_format"); err != nil {
		return nil, err
	}
	out := &localReplyConfig{}
	if bf := c.GetBodyFormat(); bf != nil {
		f, err := buildReplyFormat(path+".body_format", bf)
		if err != nil {
			return nil, err
		}
		out.format = f
	}
	for i, m := range c.GetMappers() {
		p := fmt.Sprintf("%s.mappers[%d]", path, i)
		if err := checkFields(p, m, "filter", "status_code", "body", "body_format_override", "headers_to_add"); err != nil {
			return nil, err
		}
		f, err := buildReplyFilter(p+".filter", m.GetFilter())
		if err != nil {
			return nil, err
		}
		rm := &replyMapper{filter: f}
		if sc := m.GetStatusCode(); sc != nil {
			rm.status = int(sc.GetValue())
		}
		if b := m.GetBody(); b != nil {
			if err := checkFields(p+".body", b, "inline_string"); err != nil {
				return nil, err
			}
			s := b.GetInlineString()
			rm.body = &s
		}
		if bf := m.GetBodyFormatOverride(); bf != nil {
			f, err := buildReplyFormat(p+".body_format_override", bf)
			if err != nil {
				return nil, err
			}
			rm.format = f
		}
		for j, hv := range m.GetHeadersToAdd() {
			hp := fmt.Sprintf("%s.headers_to_add[%d]", p, j)
			if err := checkFields(hp, hv, "header", "append_action"); err != nil {
				return nil, err
			}
			// Only overwrite-or-add is modelled: a local reply has no
			// header of the name yet in the shipped configs, and the
			// other actions' corner cases are not needed.
			if hv.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				return nil, &UnsupportedError{Field: hp + ".append_action", Why: "only OVERWRITE_IF_EXISTS_OR_ADD is modelled"}
			}
			if err := checkFields(hp+".header", hv.GetHeader(), "key", "value"); err != nil {
				return nil, err
			}
			rm.add = append(rm.add, [2]string{strings.ToLower(hv.GetHeader().GetKey()), hv.GetHeader().GetValue()})
		}
		out.mappers = append(out.mappers, rm)
	}
	return out, nil
}

func buildReplyFormat(path string, f *corev3.SubstitutionFormatString) (*replyFormat, error) {
	if err := checkFields(path, f, "json_format", "text_format", "content_type"); err != nil {
		return nil, err
	}
	rf := &replyFormat{contentType: f.GetContentType()}
	if js := f.GetJsonFormat(); js != nil {
		if err := checkReplyJSON(path+".json_format", js); err != nil {
			return nil, err
		}
		rf.json = js
		if rf.contentType == "" {
			rf.contentType = "application/json"
		}
		return rf, nil
	}
	t, err := parseReplyTemplate(path+".text_format", f.GetTextFormat())
	if err != nil {
		return nil, err
	}
	rf.text = t
	if rf.contentType == "" {
		rf.contentType = "text/plain"
	}
	return rf, nil
}

// checkReplyJSON accepts string values (literal text with commands) and
// nested objects: the value kinds Envoy's structured formatter renders on
// every supported version (the legacy formatter of 1.34 refuses booleans
// and null).
func checkReplyJSON(path string, s *structpb.Struct) error {
	for k, v := range s.GetFields() {
		p := path + "." + k
		switch x := v.GetKind().(type) {
		case *structpb.Value_StructValue:
			if err := checkReplyJSON(p, x.StructValue); err != nil {
				return err
			}
		case *structpb.Value_StringValue:
			if _, err := parseReplyTemplate(p, x.StringValue); err != nil {
				return err
			}
		default:
			return unsupported(p, "only strings and objects are modelled in a local reply json_format")
		}
	}
	return nil
}

// parseReplyTemplate accepts the commands a local reply format uses.
func parseReplyTemplate(path, s string) (*logTemplate, error) {
	t, err := scanTemplate(s, func(text, name, arg string, limited bool) (*logCommand, error) {
		if arg != "" || limited {
			return nil, unsupported(path, "%s: commands with arguments or length limits are not modelled in a local reply format", text)
		}
		switch name {
		case "LOCAL_REPLY_BODY", "RESPONSE_CODE", "RESPONSE_CODE_DETAILS":
			return &logCommand{name: name}, nil
		}
		return nil, unsupported(path, "local reply format command %%%s%% is not modelled", name)
	})
	if err != nil {
		return nil, err
	}
	if len(t.parts) == 1 && t.parts[0].cmd != nil {
		return nil, unsupported(path, "a lone command (typed JSON value) is not modelled; add literal text")
	}
	return t, nil
}

func buildReplyFilter(path string, f *accesslogv3.AccessLogFilter) (replyFilter, error) {
	if f == nil {
		return nil, unsupported(path, "a mapper needs a filter")
	}
	switch x := f.GetFilterSpecifier().(type) {
	case *accesslogv3.AccessLogFilter_StatusCodeFilter:
		cmp := x.StatusCodeFilter.GetComparison()
		if cmp.GetValue().GetRuntimeKey() != "" {
			return nil, unsupported(path+".status_code_filter.comparison.value.runtime_key", "runtime overrides are not modelled")
		}
		v := int(cmp.GetValue().GetDefaultValue())
		switch cmp.GetOp() {
		case accesslogv3.ComparisonFilter_EQ:
			return func(c *replyCtx) bool { return c.status == v }, nil
		case accesslogv3.ComparisonFilter_GE:
			return func(c *replyCtx) bool { return c.status >= v }, nil
		case accesslogv3.ComparisonFilter_LE:
			return func(c *replyCtx) bool { return c.status <= v }, nil
		}
		return nil, unsupported(path+".status_code_filter.comparison.op", "%s is not modelled", cmp.GetOp())
	case *accesslogv3.AccessLogFilter_ResponseFlagFilter:
		want := x.ResponseFlagFilter.GetFlags()
		return func(c *replyCtx) bool {
			for _, f := range c.flags {
				if len(want) == 0 || contains(want, f) {
					return true
				}
			}
			return false
		}, nil
	case *accesslogv3.AccessLogFilter_AndFilter:
		fs, err := buildReplyFilters(path+".and_filter", x.AndFilter.GetFilters())
		if err != nil {
			return nil, err
		}
		return func(c *replyCtx) bool {
			for _, f := range fs {
				if !f(c) {
					return false
				}
			}
			return true
		}, nil
	case *accesslogv3.AccessLogFilter_OrFilter:
		fs, err := buildReplyFilters(path+".or_filter", x.OrFilter.GetFilters())
		if err != nil {
			return nil, err
		}
		return func(c *replyCtx) bool {
			for _, f := range fs {
				if f(c) {
					return true
				}
			}
			return false
		}, nil
	case *accesslogv3.AccessLogFilter_MetadataFilter:
		return buildMetadataFilter(path+".metadata_filter", x.MetadataFilter)
	}
	return nil, unsupported(path, "access log filter %T is not modelled in local_reply_config", f.GetFilterSpecifier())
}

func buildReplyFilters(path string, in []*accesslogv3.AccessLogFilter) ([]replyFilter, error) {
	var out []replyFilter
	for i, f := range in {
		rf, err := buildReplyFilter(fmt.Sprintf("%s.filters[%d]", path, i), f)
		if err != nil {
			return nil, err
		}
		out = append(out, rf)
	}
	return out, nil
}

// buildMetadataFilter is AccessLog::MetadataFilter: a present value matches
// if the value matcher matches it; an absent one gives
// match_if_key_not_found (default true). MetadataMatcher.invert is not
// read by this filter.
func buildMetadataFilter(path string, mf *accesslogv3.MetadataFilter) (replyFilter, error) {
	m := mf.GetMatcher()
	if m == nil {
		return nil, unsupported(path+".matcher", "a metadata filter without a matcher is not modelled")
	}
	if err := checkFields(path+".matcher", m, "filter", "path", "value"); err != nil {
		return nil, err
	}
	var keys []string
	for _, s := range m.GetPath() {
		keys = append(keys, s.GetKey())
	}
	var match func(*structpb.Value) bool
	switch v := m.GetValue().GetMatchPattern().(type) {
	case *matcherv3.ValueMatcher_NullMatch_:
		match = func(x *structpb.Value) bool { _, ok := x.GetKind().(*structpb.Value_NullValue); return ok }
	case *matcherv3.ValueMatcher_PresentMatch:
		want := v.PresentMatch
		match = func(*structpb.Value) bool { return want }
	default:
		return nil, unsupported(path+".matcher.value", "only null_match and present_match are modelled")
	}
	dflt := true
	if w := mf.GetMatchIfKeyNotFound(); w != nil {
		dflt = w.GetValue()
	}
	ns := m.GetFilter()
	return func(c *replyCtx) bool {
		v := metadataValue(c.metadata[ns], keys)
		if v == nil {
			return dflt
		}
		return match(v)
	}, nil
}

func metadataValue(s *structpb.Struct, path []string) *structpb.Value {
	if s == nil || len(path) == 0 {
		return nil
	}
	v := s.GetFields()[path[0]]
	for _, k := range path[1:] {
		st := v.GetStructValue()
		if st == nil {
			return nil
		}
		v = st.GetFields()[k]
	}
	return v
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// rewrite is LocalReplyImpl::rewrite: it returns the (possibly new) status,
// body and content type. Without a config the body stays as it is.
func (lr *localReplyConfig) rewrite(c *replyCtx) (status int, body, contentType string) {
	if lr == nil {
		return c.status, c.body, "text/plain"
	}
	format := lr.format
	for _, m := range lr.mappers {
		if !m.filter(c) {
			continue
		}
		if m.body != nil {
			c.body = *m.body
		}
		if m.status != 0 {
			c.status = m.status
		}
		if m.format != nil {
			format = m.format
		}
		c.add = m.add
		break
	}
	if format == nil {
		return c.status, c.body, "text/plain"
	}
	return c.status, format.render(c), format.contentType
}

func (f *replyFormat) render(c *replyCtx) string {
	if f.text != nil {
		return f.text.evalReply(c)
	}
	js, err := json.Marshal(renderReplyStruct(f.json, c))
	if err != nil {
		// Unreachable: the tree holds strings and objects only.
		return ""
	}
	// Envoy's JSON formatter ends the line with a newline.
	return string(js) + "\n"
}

func renderReplyStruct(s *structpb.Struct, c *replyCtx) map[string]any {
	out := make(map[string]any, len(s.GetFields()))
	keys := make([]string, 0, len(s.GetFields()))
	for k := range s.GetFields() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch x := s.GetFields()[k].GetKind().(type) {
		case *structpb.Value_StructValue:
			out[k] = renderReplyStruct(x.StructValue, c)
		case *structpb.Value_StringValue:
			t, _ := parseReplyTemplate("", x.StringValue)
			out[k] = t.evalReply(c)
		}
	}
	return out
}

// evalReply renders a template for a local reply; an empty value is "-",
// as in Envoy's formatters.
func (t *logTemplate) evalReply(c *replyCtx) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.cmd == nil {
			b.WriteString(p.lit)
			continue
		}
		v := ""
		switch p.cmd.name {
		case "LOCAL_REPLY_BODY":
			v = c.body
		case "RESPONSE_CODE":
			v = strconv.Itoa(c.status)
		case "RESPONSE_CODE_DETAILS":
			v = c.details
		}
		if v == "" {
			v = "-"
		}
		b.WriteString(v)
	}
	return b.String()
}

// Package bedrock translates between OpenAI's chat completions and
// embeddings APIs and Amazon Bedrock Runtime (kind "bedrock"): Converse
// and ConverseStream for chat, InvokeModel for Amazon Titan Text Embeddings
// and Cohere Embed.
//
// Every request is signed with AWS Signature Version 4 (service "bedrock")
// over its final body, with credentials from the AWS SDK's default chain,
// loaded once per provider and region and cached. Streams arrive as AWS
// event-stream frames and are decoded incrementally by one decoder per
// response. What is translated, what is refused and why is documented in
// docs/providers/bedrock.md.
package bedrock

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/internal/respbody"
)

// Kind is the provider kind served by this translator.
const Kind = "bedrock"

// Defaults and reserved names.
const (
	// SigningService is the SigV4 service name of Bedrock Runtime.
	SigningService = "bedrock"
	// ResponseTool is the reserved tool name that carries a JSON response
	// (response_format json_schema / json_object): the model is forced to
	// call it, and its input is returned as the message content. Client
	// tools may not use this name.
	ResponseTool = "llmux_json_response"
	// InputTokenCountHeader is the response header in which InvokeModel
	// reports the input tokens; Cohere Embed's body has no token count.
	InputTokenCountHeader = "x-amzn-bedrock-input-token-count"
	// EventStreamType is the content type of ConverseStream responses.
	EventStreamType = "application/vnd.amazon.eventstream"
)

// maxBuffered bounds a non-streamed body the decoder holds.
const maxBuffered = 64 << 20

func init() {
	translate.Register(Kind, Translator{})
}

// Translator implements translate.Translator for Amazon Bedrock Runtime.
// The zero value signs with the AWS default credential chain and the wall
// clock.
type Translator struct {
	// Credentials returns the credentials for target; nil means the AWS
	// default chain, cached per provider and region (DefaultCredentials).
	Credentials func(ctx context.Context, target *translate.Target) (aws.Credentials, error)
	// Now is the signing clock; nil means time.Now.
	Now func() time.Time
}

// Host returns the Bedrock Runtime host of target: Target.Host, or
// bedrock-runtime.{region}.amazonaws.com (the name Envoy's
// auto_host_rewrite puts in Host for the provider's cluster, and so the one
// that must be signed).
func Host(t *translate.Target) string {
	if t.Host != "" {
		return t.Host
	}
	return "bedrock-runtime." + t.Region + ".amazonaws.com"
}

// escapeModel escapes a model id (or an inference profile / provisioned
// model ARN) as one path segment: everything but RFC 3986 unreserved
// characters is percent-encoded, so ':' and '/' become %3A and %2F as
// AWS's own SDKs send them.
func escapeModel(id string) string {
	const hexd = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(id) + 8)
	for i := 0; i < len(id); i++ {
		c := id[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexd[c>>4])
		b.WriteByte(hexd[c&15])
	}
	return b.String()
}

// Request implements translate.Translator.
func (tr Translator) Request(ctx context.Context, req *translate.Request, t *translate.Target) (*translate.Upstream, error) {
	if t.Region == "" {
		return nil, fmt.Errorf("bedrock: provider %q has no region", t.Provider)
	}
	st := &state{model: t.Model, op: req.Op}
	req.State = st
	base := strings.TrimSuffix(t.BasePath, "/") + "/model/" + escapeModel(t.Model)
	var (
		path string
		body []byte
		terr *translate.Error
	)
	switch req.Op {
	case translate.OpChat:
		path = base + "/converse"
		if req.Stream {
			path = base + "/converse-stream"
		}
		b := builder{model: t.Model}
		body, terr = b.build(respbody.View(req.Body))
		st.jsonMode = b.jsonMode
	case translate.OpEmbeddings:
		path = base + "/invoke"
		body, terr = embedRequest(respbody.View(req.Body), t.Model, st)
	default:
		return nil, fmt.Errorf("bedrock: unsupported operation %s", req.Op)
	}
	if terr != nil {
		return nil, terr
	}
	headers, err := tr.sign(ctx, t, path, body)
	if err != nil {
		return nil, err
	}
	up := &translate.Upstream{Path: path, Body: body, Headers: headers}
	keys := make([]string, 0, len(t.Headers))
	for k := range t.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		up.Headers = append(up.Headers, translate.Header{Key: k, Value: t.Headers[k]})
	}
	return up, nil
}

// sign returns the headers of a SigV4-signed POST of body to path.
func (tr Translator) sign(ctx context.Context, t *translate.Target, path string, body []byte) ([]translate.Header, error) {
	credFn := tr.Credentials
	if credFn == nil {
		credFn = DefaultCredentials
	}
	creds, err := credFn(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("bedrock: AWS credentials for provider %q: %w", t.Provider, err)
	}
	now := time.Now
	if tr.Now != nil {
		now = tr.Now
	}
	// Only the headers set here are signed; Envoy may add others.
	sig, err := signV4(&creds, Host(t), path, body, SigningService, t.Region, now())
	if err != nil {
		return nil, err
	}
	h := make([]translate.Header, 0, 5+len(t.Headers))
	h = append(h,
		translate.Header{Key: "content-type", Value: contentType},
		translate.Header{Key: "authorization", Value: sig.authorization},
		translate.Header{Key: "x-amz-date", Value: sig.date},
		translate.Header{Key: "x-amz-content-sha256", Value: sig.payloadHash},
	)
	if tok := creds.SessionToken; tok != "" {
		h = append(h, translate.Header{Key: "x-amz-security-token", Value: tok})
	}
	return h, nil
}

var (
	credsMu sync.Mutex
	creds   = map[string]*aws.CredentialsCache{}
)

// DefaultCredentials returns credentials from the AWS SDK's default chain
// (environment, shared config and credentials files, web identity, SSO,
// container and instance roles) for the target's region. The chain is
// loaded once per provider and region and cached with
// aws.CredentialsCache, which refreshes expiring credentials; ctx bounds
// the load and any refresh.
func DefaultCredentials(ctx context.Context, t *translate.Target) (aws.Credentials, error) {
	key := t.Provider + "\x00" + t.Region
	credsMu.Lock()
	c := creds[key]
	if c == nil {
		cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(t.Region))
		if err != nil {
			credsMu.Unlock()
			return aws.Credentials{}, err
		}
		if cfg.Credentials == nil {
			credsMu.Unlock()
			return aws.Credentials{}, fmt.Errorf("no credentials provider")
		}
		if cc, ok := cfg.Credentials.(*aws.CredentialsCache); ok {
			c = cc
		} else {
			c = aws.NewCredentialsCache(cfg.Credentials)
		}
		creds[key] = c
	}
	credsMu.Unlock()
	return c.Retrieve(ctx)
}

// ForgetCredentials implements translate.CredentialForgetter: the next
// request of the provider reloads the AWS default chain.
func (Translator) ForgetCredentials(provider string) {
	credsMu.Lock()
	defer credsMu.Unlock()
	for k := range creds {
		if strings.HasPrefix(k, provider+"\x00") {
			delete(creds, k)
		}
	}
}

// state is what the decoder needs to know about the request.
type state struct {
	op       translate.Operation
	model    string
	jsonMode bool
	embed    embedKind
	base64   bool
}

// nowUnix is the "created" timestamp of responses; tests replace it.
var nowUnix = func() int64 { return time.Now().Unix() }

// newID returns a response id (Bedrock's bodies carry none); tests
// replace it.
var newID = func() string { return "chatcmpl-" + randHex(24) }

// parseCount reads a token count header: a decimal integer, or -1 when
// the header is absent or malformed.
func parseCount(v string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// NewDecoder implements translate.Translator.
func (Translator) NewDecoder(req *translate.Request, status int, contentType string) translate.Decoder {
	st, _ := req.State.(*state)
	if st == nil {
		st = &state{op: req.Op}
	}
	d := &decoder{st: *st, stream: req.Stream, includeUsage: req.IncludeUsage, status: status, created: nowUnix(), whole: respbody.Whole{Max: maxBuffered, Name: "bedrock"}, respBlock: -1, headerTokens: -1}
	d.res.Model = st.model
	if rh := req.ResponseHeaders; rh != nil {
		if req.Op == translate.OpEmbeddings {
			d.headerTokens = parseCount(rh.Get(InputTokenCountHeader))
		}
		if status >= 400 {
			// Bedrock names an error's type in x-amzn-ErrorType
			// ("ThrottlingException:http://…"), not in the body.
			d.errType = strings.Clone(rh.Get("x-amzn-errortype"))
		}
	}
	if req.MaxBuffered > 0 {
		d.whole.Max = int(min(req.MaxBuffered, 1<<40))
	}
	d.mode = respbody.ModeOf(status, req.Stream && req.Op == translate.OpChat, contentType, EventStreamType)
	return d
}

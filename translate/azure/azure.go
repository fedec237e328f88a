// Package azure is the translator for Azure OpenAI (provider kind
// azure_openai).
//
// Azure OpenAI speaks OpenAI's chat completions and embeddings schema on a
// per-deployment path:
//
//	{base}/deployments/{deployment}/chat/completions?api-version={version}
//	{base}/deployments/{deployment}/embeddings?api-version={version}
//
// where the deployment is the deployment's configured model
// (translate.Target.Model), base defaults to /openai and the version to
// DefaultAPIVersion. The body is OpenAI's with "model" set to the
// deployment name (Azure routes by the path and ignores it, as Microsoft's
// own OpenAI clients do); authentication is the api-key header, or a
// Microsoft Entra ID bearer token when the provider's options say
// auth: entra.
//
// Responses reuse the OpenAI decoder (translate/openai) with Azure's
// dialect: the prompt_filter_results-only chunk Azure sends before the role
// chunk is dropped (so the role chunk stays first), content_filter_results pass through, and Azure's error bodies (code but
// no type, "code":"429", DeploymentNotFound, content_filter with an
// innererror) are classified and rewritten into OpenAI's shape.
package azure

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/llmux/llmux/translate"
	"github.com/llmux/llmux/translate/openai"
)

// Kind is the provider kind served by this package.
const Kind = "azure_openai"

// DefaultAPIVersion is the api-version used when the provider sets none:
// the GA data-plane version documented in Azure OpenAI's REST reference.
const DefaultAPIVersion = "2024-10-21"

// DefaultBasePath is the base path used when the provider sets none.
const DefaultBasePath = "/openai"

// Provider options (translate.Target.Options).
const (
	// OptionAuth selects authentication: "api_key" (default: the api-key
	// header with the provider's key) or "entra" (a bearer token from
	// azidentity's DefaultAzureCredential).
	OptionAuth = "auth"
	// OptionScope overrides the Entra token scope (default
	// EntraScope).
	OptionScope = "entra_scope"
)

// EntraScope is the token scope for Azure OpenAI (Azure AI services).
const EntraScope = "https://cognitiveservices.azure.com/.default"

func init() {
	translate.Register(Kind, New())
}

// Translator implements translate.Translator for Azure OpenAI.
type Translator struct {
	tokens *tokenCache
}

// New returns a translator whose Entra ID tokens come from
// DefaultAzureCredential, one credential per provider.
func New() *Translator { return &Translator{tokens: newTokenCache(defaultCredential)} }

// NewWithCredentials returns a translator that gets Entra ID credentials
// from newCred (one call per provider name); tests use it to inject a
// credential.
func NewWithCredentials(newCred CredentialFactory) *Translator {
	return &Translator{tokens: newTokenCache(newCred)}
}

// Request implements translate.Translator.
func (tr *Translator) Request(ctx context.Context, req *translate.Request, t *translate.Target) (*translate.Upstream, error) {
	var op string
	switch req.Op {
	case translate.OpChat:
		op = "/chat/completions"
	case translate.OpEmbeddings:
		op = "/embeddings"
	default:
		return nil, &translate.Error{Code: translate.CodeUnsupported, Message: fmt.Sprintf("Azure OpenAI does not serve %s through llmux.", req.Op)}
	}
	if t.Model == "" {
		return nil, fmt.Errorf("azure: deployment %q has no model (the Azure deployment name)", t.Provider)
	}
	base := t.BasePath
	if base == "" {
		base = DefaultBasePath
	}
	version := t.APIVersion
	if version == "" {
		version = DefaultAPIVersion
	}
	path := strings.TrimSuffix(base, "/") + "/deployments/" + url.PathEscape(t.Model) + op + "?api-version=" + url.QueryEscape(version)
	body, err := openai.Body(req, t.Model)
	if err != nil {
		return nil, err
	}
	up := &translate.Upstream{Path: path, Body: body}
	up.Headers = append(up.Headers, translate.Header{Key: "content-type", Value: "application/json"})
	switch auth := t.Options[OptionAuth]; auth {
	case "entra":
		scope := t.Options[OptionScope]
		if scope == "" {
			scope = EntraScope
		}
		tok, err := tr.tokens.token(ctx, t.Provider, scope)
		if err != nil {
			return nil, &translate.Error{Code: translate.CodeUpstreamUnavailable, OpenAICode: "upstream_credentials",
				Message: "The gateway could not obtain a Microsoft Entra ID token for this deployment's provider; see the gateway logs."}
		}
		up.Headers = append(up.Headers, translate.Header{Key: "authorization", Value: "Bearer " + tok})
	case "", "api_key":
		if t.APIKey != "" {
			up.Headers = append(up.Headers, translate.Header{Key: "api-key", Value: t.APIKey})
		}
	default:
		return nil, fmt.Errorf("azure: provider %q: unknown options.auth %q (want api_key or entra)", t.Provider, auth)
	}
	up.Headers = openai.AppendHeaders(up.Headers, t.Headers)
	return up, nil
}

// NewDecoder implements translate.Translator.
// ForgetCredentials implements translate.CredentialForgetter: it drops the
// provider's cached Entra ID tokens.
func (tr *Translator) ForgetCredentials(provider string) { tr.tokens.forget(provider) }

func (tr *Translator) NewDecoder(req *translate.Request, status int, contentType string) translate.Decoder {
	return openai.NewDecoder(req, status, contentType, decoderOptions)
}

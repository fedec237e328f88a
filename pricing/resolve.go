package pricing

import "strings"

// kindPrefixes are the litellm key prefixes of llmux's provider kinds.
var kindPrefixes = map[string]string{
	"openai":           "openai/",
	"azure_openai":     "azure/",
	"anthropic":        "anthropic/",
	"bedrock":          "bedrock/",
	"gemini":           "gemini/",
	"vertex":           "vertex_ai/",
	"vertex_anthropic": "vertex_ai/",
}

// ProfilePrefixes are the Bedrock cross-region inference-profile prefixes
// ("us.anthropic.claude-…"), as litellm's table uses them.
var ProfilePrefixes = []string{"us.", "us-gov.", "eu.", "apac.", "au.", "jp.", "ca.", "global."}

// Resolve finds the price entry of a deployment: a model id on a provider
// of an llmux kind (openai, azure_openai, anthropic, bedrock, gemini,
// vertex, vertex_anthropic, openai_compatible). It returns the entry and
// the key that matched.
//
// An explicit priceKey is the only key tried when it is set. Otherwise,
// for each form of the model id, the kind's litellm prefix ("bedrock/",
// "azure/", "gemini/", "vertex_ai/", "anthropic/", "openai/") is tried
// before the bare id. The forms are: the id as given; for Bedrock, the
// last segment of an ARN, then the id without its inference-profile prefix
// ("us.", "eu.", "apac.", "global.", …); for Gemini and Vertex, the id
// without "models/"; for Vertex, then without its "@version". An Azure
// model is the deployment's name, tried as it is. openai_compatible
// servers (self-hosted or any vendor) get the bare id only: give a
// price_key such as "groq/…" for a hosted one.
//
// An unknown model gives ok=false: there is no fallback price.
func (t *Table) Resolve(kind, model, priceKey string) (e *Entry, key string, ok bool) {
	if priceKey != "" {
		e, ok = t.entries[priceKey]
		return e, priceKey, ok
	}
	prefix := kindPrefixes[kind]
	try := func(id string) (*Entry, string, bool) {
		if id == "" {
			return nil, "", false
		}
		if prefix != "" {
			if e, ok := t.entries[prefix+id]; ok {
				return e, prefix + id, true
			}
		}
		e, ok := t.entries[id]
		return e, id, ok
	}
	if e, key, ok = try(model); ok {
		return e, key, ok
	}
	switch kind {
	case "bedrock":
		id := model
		if i := strings.LastIndexByte(id, '/'); strings.HasPrefix(id, "arn:") && i >= 0 {
			id = id[i+1:]
			if e, key, ok = try(id); ok {
				return e, key, ok
			}
		}
		for _, p := range ProfilePrefixes {
			if rest, found := strings.CutPrefix(id, p); found {
				return try(rest)
			}
		}
	case "gemini", "vertex", "vertex_anthropic":
		id := model
		if rest, found := strings.CutPrefix(id, "models/"); found {
			id = rest
			if e, key, ok = try(id); ok {
				return e, key, ok
			}
		}
		if i := strings.IndexByte(id, '@'); i > 0 && kind != "gemini" {
			return try(id[:i])
		}
	}
	return nil, "", false
}

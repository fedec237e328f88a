package processor

import (
	"strings"

	"github.com/llmux/llmux/translate"
)

// endpoint is an OpenAI API endpoint the gateway knows.
type endpoint uint8

const (
	epUnknown endpoint = iota
	epChat
	epEmbeddings
	epModels
	epModel // GET /v1/models/{id}
)

// String is the endpoint's name in metrics and logs.
func (e endpoint) String() string {
	switch e {
	case epChat:
		return "chat.completions"
	case epEmbeddings:
		return "embeddings"
	case epModels, epModel:
		return "models"
	}
	return "unknown"
}

// method is the HTTP method the endpoint accepts.
func (e endpoint) method() string {
	if e == epModels || e == epModel {
		return "GET"
	}
	return "POST"
}

// op is the translate operation of a forwarded endpoint.
func (e endpoint) op() translate.Operation {
	switch e {
	case epChat:
		return translate.OpChat
	case epEmbeddings:
		return translate.OpEmbeddings
	}
	return 0
}

// classify maps a :path to an endpoint. For epModel it also returns the
// model id.
func classify(path string) (endpoint, string) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	switch path {
	case "/v1/chat/completions":
		return epChat, ""
	case "/v1/embeddings":
		return epEmbeddings, ""
	case "/v1/models":
		return epModels, ""
	}
	if id, ok := strings.CutPrefix(path, "/v1/models/"); ok && id != "" {
		return epModel, id
	}
	return epUnknown, ""
}

package fakeprovider

// Claude on Google Vertex AI, served by the Anthropic fake. Wire format, as
// documented by Anthropic ("Claude on Vertex AI",
// https://docs.anthropic.com/en/api/claude-on-vertex-ai) and Google ("Use
// Claude models",
// https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude/use-claude):
//
//   - POST /v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict,
//     or :streamRawPredict for a stream;
//   - "Authorization: Bearer <Google OAuth access token>";
//   - the body is a Messages API request, except that the model is in the
//     URL and not in the body, and the version is the body field
//     "anthropic_version", which must be "vertex-2023-10-16" (instead of the
//     anthropic-version header);
//   - the answer is the Messages API's: the same message object, the same
//     SSE event sequence.
//
// Errors come in two shapes. Google's front end answers authentication,
// permission, unknown-model and quota failures itself, with a
// google.rpc.Status body ({"error":{"code","message","status"}}; the 429 is
// RESOURCE_EXHAUSTED "Quota exceeded for
// aiplatform.googleapis.com/online_prediction_requests_per_base_model ...",
// as users report it); the model's own errors (invalid requests, 529
// overloaded_error) pass through in Anthropic's shape.
//
// The fake is stricter than Vertex in two ways, both to catch gateway bugs:
// a request carrying x-api-key is refused (the Anthropic key must never be
// sent to Google), and "stream" must match the method (true on
// :streamRawPredict, absent or false on :rawPredict).

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// VertexAnthropicVersion is the only anthropic_version body value Claude on
// Vertex AI accepts.
const VertexAnthropicVersion = "vertex-2023-10-16"

// vertexAnthropicPath matches the rawPredict and streamRawPredict routes;
// the submatches are project, region, model and method. Model ids carry an
// "@version" suffix (claude-sonnet-4-5@20250929).
var vertexAnthropicPath = regexp.MustCompile(`^/v1(?:beta1)?/projects/([^/]+)/locations/([^/]+)/publishers/anthropic/models/([^/:]+):(rawPredict|streamRawPredict)$`)

// serveVertex answers one Claude-on-Vertex request for model; stream tells
// the method (streamRawPredict).
func (a *anthropic) serveVertex(w http.ResponseWriter, r *http.Request, model string, stream bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeGoogleError(w, http.StatusMethodNotAllowed, "INVALID_ARGUMENT", "Method "+r.Method+" not allowed; use POST. (fake)")
		return
	}
	f, err := a.s.planFault(r)
	if err != nil {
		writeGoogleError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	if f.Delay == 0 && fakeHeader(r, HeaderDelay) == "" {
		f.Delay = a.opts.ChunkDelay
	}
	if f.Kind == FaultResetBeforeHeaders {
		abortBeforeHeaders(w, r)
	}
	if f.Status != 0 {
		if (needsRetryAfter(f.Status) || f.Status == 529) && !googleFrontEnd(f.Status, f.ErrorCode) {
			w.Header().Set("retry-after", f.RetryAfter)
		}
		a.writeVertexStatusError(w, f.Status, f.ErrorCode, model)
		return
	}
	if !bearerAccepted(r.Header, a.opts.OAuth, a.opts.BearerToken) {
		writeGoogleError(w, http.StatusUnauthorized, "UNAUTHENTICATED",
			"Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. (fake)")
		return
	}
	if r.Header.Get("x-api-key") != "" {
		a.writeError(w, http.StatusBadRequest, antInvalid("x-api-key: an Anthropic API key must not be sent to Vertex AI (fake)"))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		a.writeError(w, http.StatusBadRequest, antInvalid("Content-Type must be application/json"))
		return
	}
	body, _ := readAll(r)
	req, verr := validateVertexAnthropicRequest(body, model)
	if verr != nil {
		a.writeError(w, http.StatusBadRequest, *verr)
		return
	}
	if req.stream != stream {
		method := map[bool]string{false: ":rawPredict", true: ":streamRawPredict"}[stream]
		a.writeError(w, http.StatusBadRequest, antInvalid("stream: "+strconv.FormatBool(req.stream)+" does not match the method "+method+" (fake)"))
		return
	}
	rep := a.buildReply(r, req)
	if f.Kind == FaultInbandError && !stream {
		a.s.writeBody(w, r, Fault{Hold: f.Hold}, http.StatusOK, "application/json", antErrorBody(anthropicStatusError(529, f.ErrorCode), a.s.requestID()))
		return
	}
	if !stream {
		b, _ := json.Marshal(rep.message())
		a.s.writeBody(w, r, f, http.StatusOK, "application/json", b)
		return
	}
	a.s.stream(w, r, f, rep.streamPlan(max(a.opts.WordsPerChunk, 1), f.ErrorCode))
}

// googleFrontEnd reports whether Google's front end, not the model,
// answers a Vertex status fault (see writeVertexStatusError).
func googleFrontEnd(status int, code string) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusTooManyRequests:
		return code == "" || code == "quota"
	}
	return false
}

// writeVertexStatusError answers an x-fake-status fault: without an
// x-fake-error-code, 401, 403, 404 and 429 come from Google's front end
// (google.rpc.Status, https://cloud.google.com/apis/design/errors; its 429
// is https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429,
// with no retry-after and no RetryInfo); 429 with the code "quota" is a
// daily quota of the front end (a QuotaFailure detail). Everything else,
// and any status with another error code, is the model's Anthropic error
// body (https://docs.anthropic.com/en/api/errors).
func (a *anthropic) writeVertexStatusError(w http.ResponseWriter, status int, code, model string) {
	if status == http.StatusTooManyRequests && code == "quota" {
		writeGoogleError(w, status, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_day_per_base_model with base model: anthropic-"+strings.SplitN(model, "@", 2)[0]+". Please submit a quota increase request. (fake)",
			map[string]any{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []any{map[string]any{"quotaId": "OnlinePredictionRequestsPerDayPerBaseModel"}}})
		return
	}
	if code == "" {
		base := strings.SplitN(model, "@", 2)[0]
		switch status {
		case http.StatusUnauthorized:
			writeGoogleError(w, status, "UNAUTHENTICATED", "Request had invalid authentication credentials. (fake)")
			return
		case http.StatusForbidden:
			writeGoogleError(w, status, "PERMISSION_DENIED", "Permission 'aiplatform.endpoints.predict' denied on resource (or it may not exist). (fake)")
			return
		case http.StatusNotFound:
			writeGoogleError(w, status, "NOT_FOUND", "Publisher Model `publishers/anthropic/models/"+model+"` not found. (fake)")
			return
		case http.StatusTooManyRequests:
			writeGoogleError(w, status, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model with base model: anthropic-"+base+". Please submit a quota increase request. (fake)")
			return
		}
	}
	a.writeError(w, status, anthropicStatusError(status, code))
}

// bearerAccepted reports whether h carries "Authorization: Bearer <token>"
// with a token that oauth issued (and has not expired) or that equals
// static. With neither oauth nor static, any non-empty token is accepted.
func bearerAccepted(h http.Header, oauth *GCPOAuth, static string) bool {
	scheme, tok, _ := strings.Cut(h.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return false
	}
	if oauth == nil && static == "" {
		return true
	}
	return (static != "" && tok == static) || (oauth != nil && oauth.Valid(tok))
}

// validateVertexAnthropicRequest checks a Claude-on-Vertex body: an
// anthropic_version of exactly VertexAnthropicVersion, no "model", and
// otherwise a valid Messages API request. The returned request's model is
// the one from the URL.
func validateVertexAnthropicRequest(body []byte, model string) (*antRequest, *antError) {
	if !json.Valid(body) {
		return nil, antErr("There was an issue with the format of your request body: invalid JSON")
	}
	m, e := antObject("body", body)
	if e != nil {
		return nil, e
	}
	v, e := m.str("", "anthropic_version", true)
	if e != nil {
		return nil, e
	}
	if v != VertexAnthropicVersion {
		return nil, antErr("anthropic_version: invalid version %q; Vertex AI expects %q", v, VertexAnthropicVersion)
	}
	if _, ok := m["model"]; ok {
		return nil, antErr("model: Extra inputs are not permitted (on Vertex AI the model is named in the URL)")
	}
	delete(m, "anthropic_version")
	m["model"], _ = json.Marshal(model)
	b, err := json.Marshal(m)
	if err != nil {
		return nil, antErr("There was an issue with the format of your request body: %v", err)
	}
	return validateAnthropicRequest(b)
}

// Package fakeprovider implements fake LLM provider HTTP servers for tests.
//
// Each fake speaks its provider's real wire format (request validation,
// response bodies, streaming framing and error bodies) closely enough that
// the providers' official SDKs accept it, and adds deterministic fault
// injection selected per request by x-fake-* headers, so that a test can
// set the headers on the client side (for example with openai-go's
// option.WithHeader) and have them travel through the gateway under test.
//
// The package is split into shared machinery and provider dialects:
//
//   - server.go: lifecycle (listen on 127.0.0.1:0, HTTP/1.1 and h2c),
//     request recording and goroutine-tight shutdown.
//   - gates.go: named hold/release gates (Server.WaitHeld, Server.Release).
//   - faults.go: the x-fake-* header contract, fault plans (Fault,
//     scripts) and the connection-level faults (resets).
//   - sse.go: the flushing frame/SSE writer and the generic streaming
//     driver that applies delays, holds and faults between frames.
//   - openai.go, openai_validate.go: the OpenAI dialect.
//
// # Headers understood by every fake
//
//	x-fake-status: <code>        reply with that HTTP status and the
//	                             provider's real error body
//	x-fake-error-code: <code>    which provider error to use with
//	                             x-fake-status (e.g. insufficient_quota)
//	x-fake-retry-after: <secs>   retry-after value on 429/503 (default 1)
//	x-fake-fault: <kind>         inband-error | truncate | stall | reset |
//	                             reset-before-headers
//	x-fake-fault-after: <K>      frames sent before the fault (default 1)
//	x-fake-hold: <name>          pause after x-fake-hold-after frames until
//	                             Server.Release(name)
//	x-fake-hold-after: <N>       frames sent before the hold (default 1)
//	x-fake-delay: <dur>          pause between stream frames ("25ms" or
//	                             "25" milliseconds; at most a minute)
//
// A stalled response also waits at a gate: the one named by x-fake-hold,
// or "stall" when that header is absent. Releases are sticky, so a test may
// Release a gate before the request reaches it; use one name per hold.
//
// # Scripts
//
// Instead of headers, a test can queue fault plans with the provider
// options' Script field or Server.Enqueue: each request to a known endpoint
// takes the next plan, and any x-fake-* header it carries overrides that
// plan field by field (so "x-fake-status: 200" cancels a scripted status).
// Build plans from DefaultFault to keep the header defaults.
//
// A request is handled in this order: it is recorded (Server.Requests);
// unknown paths get 404 and wrong methods 405 with the provider's error
// body; the next scripted plan is taken; malformed x-fake-* headers get 400
// mentioning "fakeprovider";
// reset-before-headers aborts; x-fake-status answers the error (before
// authentication, so it needs no valid key); then authentication, strict
// body validation, and finally the normal response with any hold or fault
// applied between frames.
//
// # OpenAI
//
// NewOpenAI / ListenOpenAI serve POST /v1/chat/completions (JSON or SSE),
// POST /v1/embeddings, GET /v1/models and GET /v1/models/{id}. Extra
// request headers: x-fake-tool-calls: N (N parallel tool calls when the
// request declares function tools and its last message is from the user;
// 0 turns OpenAIOptions.ToolCalls off) and x-fake-reply: <text> (reply text
// for one request). Token counts are whitespace-separated words; streamed
// content deltas carry OpenAIOptions.WordsPerChunk words (default 1), each
// but the first with its leading space. testdata/openai holds the documented
// response shapes the fake is checked against and golden copies of its
// output.
//
// # Anthropic
//
// NewAnthropic / ListenAnthropic serve POST /v1/messages (JSON or the real
// SSE event sequence: message_start, content_block_start, ping,
// content_block_delta, content_block_stop, message_delta, message_stop).
// Requests need x-api-key and anthropic-version and pass strict validation
// (unknown fields, missing max_tokens, roles other than user/assistant,
// consecutive same-role turns, tool_result outside a user turn or without
// its tool_use, …) or get Anthropic's 400 error body. x-fake-tool-calls: N
// asks for N tool_use blocks whose inputs are built from the tools' schemas;
// a forced tool_choice is always honoured. x-fake-status 529 answers
// overloaded_error, and the in-band error is an "event: error" frame
// (x-fake-error-code picks its type). AnthropicOptions.CacheReadTokens and
// CacheCreationTokens are reported in every usage.
//
// # Azure OpenAI
//
// NewAzure / ListenAzure serve POST /openai/deployments/{deployment}/
// chat/completions and …/embeddings. A missing or unknown api-version is
// 400 (AzureOptions.APIVersions, default DefaultAzureAPIVersions; real Azure
// answers some of these with 404); auth is "api-key: <key>" or
// "Authorization: Bearer <Entra token>"; a deployment outside
// AzureOptions.Deployments is 404 DeploymentNotFound. Bodies are validated
// and answered by the OpenAI dialect ("model" optional), then annotated the
// way Azure does: prompt_filter_results (in streams, a first chunk with
// empty choices and no id), content_filter_results on every choice.
// x-fake-content-filter: prompt answers the 400 content_filter error with
// its innererror; x-fake-content-filter: completion cuts the reply with
// finish_reason "content_filter". Error bodies are Azure's ({"error":
// {"code","message"}}, no "type"; "code":"429" with retry-after and
// retry-after-ms), including the in-band error.
//
// OpenAIOptions.NoStreamUsage, UsageOnLastChunk, Reasoning and ErrorStyle
// (fastapi, ollama, vllm) make the OpenAI fake behave like an
// OpenAI-compatible server.
//
// # Gemini and Vertex AI
//
// NewGemini / ListenGemini serve AI Studio
// (POST /v1beta/models/{m}:generateContent, :streamGenerateContent?alt=sse,
// :batchEmbedContents; x-goog-api-key) and Vertex AI
// (POST /v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent,
// :streamGenerateContent?alt=sse, :predict; a bearer issued by
// GeminiOptions.OAuth or equal to BearerToken). Requests are decoded
// strictly (unknown fields, roles other than user/model, empty parts,
// functionResponse without a name, Schema keywords Gemini rejects such as
// additionalProperties, $schema or type arrays); errors are google.rpc.Status
// bodies. x-fake-tool-calls and x-fake-reply work as for OpenAI; the shared
// faults and holds apply. NewGCPOAuth / ListenGCPOAuth is a Google OAuth
// token endpoint for service-account JWTs (verified with the key it writes
// into the credentials file) for Application Default Credentials tests.
//
// # Bedrock
//
// NewBedrock / ListenBedrock serve Bedrock Runtime: POST
// /model/{model id}/converse (JSON), /model/{model id}/converse-stream
// (real application/vnd.amazon.eventstream frames: messageStart,
// contentBlockStart for toolUse, contentBlockDelta, contentBlockStop,
// messageStop, metadata) and /model/{model id}/invoke for Titan Text
// Embeddings and Cohere Embed. Every request must carry a SigV4 signature
// (service bedrock, BedrockOptions.Region, Host
// bedrock-runtime.{region}.amazonaws.com) that the fake recomputes with the
// AWS SDK signer from the known test credentials (BedrockAccessKeyID /
// BedrockSecretAccessKey by default) over the headers named in
// SignedHeaders, and must pass strict validation (unknown fields, missing
// messages, a first turn or consecutive turns breaking user/assistant
// order, toolResult outside a user turn or without its toolUse, tool
// blocks without toolConfig, …); failures get Bedrock's error: the type in
// x-amzn-ErrorType and {"message": ...} in the body. x-fake-status answers
// the exception Bedrock uses for that status (429 ThrottlingException,
// 400 ValidationException, 503 ServiceUnavailableException, …;
// x-fake-error-code names another type, or context_length_exceeded); the
// in-band error is an exception frame (x-fake-error-code picks its
// :exception-type, default modelStreamErrorException).
package fakeprovider

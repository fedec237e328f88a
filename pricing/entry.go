package pricing

import "github.com/llmux/llmux/translate"

// Rates are USD prices per token. Parse and the configuration fill every
// rate a source leaves out from the rate it falls back to (cache reads,
// cache writes and audio input at the input rate; audio output at the
// output rate), so a zero here is a real zero price, with one exception:
// ReasoningPerToken 0 means reasoning tokens are priced as output.
type Rates struct {
	// InputPerToken prices prompt tokens that were neither read from nor
	// written to a cache.
	InputPerToken float64
	// OutputPerToken prices completion tokens.
	OutputPerToken float64
	// CacheReadPerToken prices prompt tokens read from a prompt cache.
	CacheReadPerToken float64
	// CacheWritePerToken prices prompt tokens written to a prompt cache
	// (the 5-minute rate where a provider has several).
	CacheWritePerToken float64
	// ReasoningPerToken prices reasoning tokens; 0 = priced as output.
	ReasoningPerToken float64
	// AudioInputPerToken and AudioOutputPerToken price audio tokens.
	AudioInputPerToken, AudioOutputPerToken float64
}

// Tier is a price tier: the rates that apply to a whole request when its
// input tokens (cached reads and writes included) are above a threshold,
// as providers price long prompts (e.g. litellm's
// input_cost_per_token_above_200k_tokens).
type Tier struct {
	// AboveInputTokens is the threshold: the tier applies when the
	// request's input tokens are strictly more.
	AboveInputTokens int64
	// Rates are the tier's complete rates (what the source leaves out is
	// inherited from the tier below).
	Rates
}

// Entry is the price of one model: its base rates, its tiers, and what
// the table says about it besides.
type Entry struct {
	// Rates are the base rates, for requests under every tier.
	Rates
	// Tiers are sorted by AboveInputTokens, ascending.
	Tiers []Tier
	// PerImage is the price of one input image, and PerAudioSecond of one
	// second of input audio. Carried for callers that count images or
	// audio; Cost does not use them (translate.Usage counts neither).
	PerImage, PerAudioSecond float64
	// MaxInputTokens and MaxOutputTokens are the context window and the
	// output limit the table gives, 0 when unknown.
	MaxInputTokens, MaxOutputTokens int64
	// Mode is the table's mode (chat, embedding, completion, ...), "" when
	// not given.
	Mode string
}

// rates returns the rates for a request with the given input tokens.
func (e *Entry) rates(input int64) *Rates {
	r := &e.Rates
	for i := range e.Tiers {
		if input <= e.Tiers[i].AboveInputTokens {
			break
		}
		r = &e.Tiers[i].Rates
	}
	return r
}

// part clamps n to [0, limit].
func part(n, limit int64) int64 { return max(0, min(n, limit)) }

// Cost is the USD cost of a finished request from its usage. The tier is
// chosen by u.InputTokens. Input tokens are split into cache reads
// (CachedTokens), cache writes (CacheCreationTokens), audio
// (AudioInputTokens) and the rest, each priced at its own rate and none
// twice; output tokens into reasoning, audio and the rest. Parts larger
// than their whole are clamped, so a provider's inconsistent usage never
// prices a token twice or a negative count.
func (e *Entry) Cost(u translate.Usage) float64 {
	r := e.rates(u.InputTokens)
	in := max(0, u.InputTokens)
	cached := part(u.CachedTokens, in)
	written := part(u.CacheCreationTokens, in-cached)
	audioIn := part(u.AudioInputTokens, in-cached-written)
	textIn := in - cached - written - audioIn
	out := max(0, u.OutputTokens)
	reasoning := part(u.ReasoningTokens, out)
	audioOut := part(u.AudioOutputTokens, out-reasoning)
	textOut := out - reasoning - audioOut
	reasoningRate := r.ReasoningPerToken
	if reasoningRate == 0 {
		reasoningRate = r.OutputPerToken
	}
	return float64(textIn)*r.InputPerToken +
		float64(cached)*r.CacheReadPerToken +
		float64(written)*r.CacheWritePerToken +
		float64(audioIn)*r.AudioInputPerToken +
		float64(textOut)*r.OutputPerToken +
		float64(reasoning)*reasoningRate +
		float64(audioOut)*r.AudioOutputPerToken
}

// Estimate is the expected USD cost of a request with the given input and
// output tokens, before it is sent: no cache, no reasoning, no audio, the
// tier chosen by inputTokens.
func (e *Entry) Estimate(inputTokens, outputTokens int64) float64 {
	r := e.rates(inputTokens)
	return float64(max(0, inputTokens))*r.InputPerToken + float64(max(0, outputTokens))*r.OutputPerToken
}

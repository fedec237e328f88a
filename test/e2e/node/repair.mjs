// Reads one streamed chat completion with the official `openai` npm package
// and prints what a client would check of a stream the gateway repaired
// (the Go test TestNodeSDKRepair breaks the provider's first attempt):
// the text, and how many ids, role chunks, finish reasons and usage chunks
// the SDK parsed.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.LLMUX_BASE_URL, apiKey: process.env.LLMUX_API_KEY, maxRetries: 0 });
const out = { text: "", ids: [], roles: 0, finishes: [], usageChunks: 0, chunks: 0, raised: false };
try {
  const stream = await client.chat.completions.create({
    model: process.env.LLMUX_MODEL,
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: "user", content: "tell me about the fox" }],
  });
  for await (const chunk of stream) {
    out.chunks++;
    if (!out.ids.includes(chunk.id)) out.ids.push(chunk.id);
    if (chunk.usage && chunk.choices.length === 0) out.usageChunks++;
    for (const c of chunk.choices) {
      if (c.delta?.role) out.roles++;
      if (c.delta?.content) out.text += c.delta.content;
      if (c.finish_reason) out.finishes.push(c.finish_reason);
    }
  }
} catch (e) {
  out.raised = true;
  out.message = e.message;
}
console.log(JSON.stringify(out));

// Drives llmux with the official `openai` npm package. The Go test
// TestNodeSDK starts the stack and runs this script; it prints one JSON
// object with what each call returned.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.LLMUX_BASE_URL, apiKey: process.env.LLMUX_API_KEY, maxRetries: 0 });
const out = {};

const chat = await client.chat.completions.create({
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "hello from node" }],
});
out.chat = { content: chat.choices[0].message.content, promptTokens: chat.usage.prompt_tokens };

const stream = await client.chat.completions.create({
  model: "gpt-4o-mini",
  stream: true,
  stream_options: { include_usage: true },
  messages: [{ role: "user", content: "stream from node" }],
});
let text = "";
let usageChunks = 0;
let finish = "";
for await (const chunk of stream) {
  if (chunk.choices.length === 0 && chunk.usage) usageChunks++;
  for (const c of chunk.choices) {
    text += c.delta?.content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
}
out.stream = { text, usageChunks, finish };

const models = await client.models.list();
out.models = models.data.map((m) => m.id);

try {
  await client.chat.completions.create({ model: "gpt-9", messages: [{ role: "user", content: "x" }] });
  out.error = { status: 0 };
} catch (e) {
  out.error = { status: e.status, code: e.code, type: e.type, isNotFound: e instanceof OpenAI.NotFoundError };
}

console.log(JSON.stringify(out));

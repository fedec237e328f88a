// Drives one streamed chat completion that the fake provider breaks (the
// Go test TestNodeSDKFailures registers the fault under LLMUX_REQUEST_ID)
// and prints whether the official `openai` npm package raised it as an
// error, with the error's code.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.LLMUX_BASE_URL, apiKey: process.env.LLMUX_API_KEY, maxRetries: 0 });
const out = { raised: false, chunks: 0 };
try {
  const stream = await client.chat.completions.create(
    { model: process.env.LLMUX_MODEL, stream: true, messages: [{ role: "user", content: "one two three four" }] },
    { headers: { "x-request-id": process.env.LLMUX_REQUEST_ID } },
  );
  for await (const chunk of stream) {
    out.chunks++;
  }
} catch (e) {
  out.raised = true;
  out.name = e.constructor.name;
  out.code = e.code;
  out.type = e.type;
  out.message = e.message;
}
console.log(JSON.stringify(out));

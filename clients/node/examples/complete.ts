import { createClient, credentials } from "@switchboard/client";

const client = createClient(process.env.SWITCHBOARD_TARGET ?? "127.0.0.1:50051", {
  apiKey: process.env.SWITCHBOARD_API_KEY,
  credentials: credentials.createInsecure(), // a local gateway, without TLS
});
const completion = await client.complete({
  model: "chat",
  messages: [{ role: "user", content: "Say hello in five words." }],
});
console.log(completion.text);
client.close();

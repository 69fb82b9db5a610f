/**
 * CompletionStream's contract on a scripted call, where the live server
 * cannot show it: an instant answer is over before a `break` could cancel it.
 */
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { test } from "node:test";

import type { ClientReadableStream } from "@grpc/grpc-js";
import { CompletionStream, type StreamCompleteResponse } from "@switchboard/client";

/** A call that has sent `events` and stays open, counting its cancellations. */
function scriptedCall(events: StreamCompleteResponse[], end: boolean) {
  const call = Object.assign(new PassThrough({ objectMode: true }), { cancels: 0 });
  Object.assign(call, { cancel: () => void (call.cancels += 1) });
  for (const event of events) {
    call.write(event);
  }
  if (end) {
    call.end();
  }
  return { call, stream: new CompletionStream(() => call as unknown as ClientReadableStream<StreamCompleteResponse>) };
}

const delta = (content: string): StreamCompleteResponse => ({ delta: { content, toolCalls: [] } });

test("leaving the loop early cancels the call", async () => {
  const { call, stream } = scriptedCall([delta("a"), delta("b")], false);

  for await (const d of stream) {
    assert.equal(d.content, "a");
    break;
  }

  assert.equal(call.cancels, 1);
  assert.equal(stream.final, undefined);
});

test("a stream read to its end is not cancelled and keeps its final", async () => {
  const final = { deployment: "d", costUsd: 0.5 } as NonNullable<StreamCompleteResponse["final"]>;
  const { call, stream } = scriptedCall([delta("a"), delta("b"), { final }], true);

  const seen: string[] = [];
  for await (const d of stream) {
    seen.push(d.content);
  }

  assert.deepEqual(seen, ["a", "b"]);
  assert.equal(stream.final, final);
  assert.equal(call.cancels, 0);
});

test("a stream that ends without its final event is an error", async () => {
  const { stream } = scriptedCall([delta("a")], true);

  await assert.rejects(async () => {
    for await (const _ of stream) {
      // the deltas are not the point
    }
  }, /without its final event/);
});

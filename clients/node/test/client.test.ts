/**
 * The client against a real gateway serving the simulator over loopback:
 * every call, every error the issue names, and the README example.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";

import {
  CacheKind,
  type CompleteInput,
  createClient,
  credentials,
  DOMAIN,
  type Delta,
  errorDetails,
  FinishReason,
  StatsPeriod,
  type SwitchboardClient,
  status,
} from "@switchboard/client";

import { type LiveServer, PACKAGE_ROOT, startLiveServer } from "./live_server.js";

const run = promisify(execFile);
const HELLO = [{ role: "user" as const, content: "Say hello in five words." }];
// The cache would answer the second of two equal requests without generating.
const NO_CACHE = { noCache: true, noStore: true };

let server: LiveServer;
let client: SwitchboardClient;

function connect(apiKey: string, timeoutMs?: number, target = server.target): SwitchboardClient {
  return createClient(target, {
    apiKey,
    credentials: credentials.createInsecure(),
    timeoutMs,
  });
}

/** The error `promise` rejects with; fails the test if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail("the call succeeded");
}

async function drain(stream: AsyncIterable<Delta>): Promise<Delta[]> {
  const deltas: Delta[] = [];
  for await (const delta of stream) {
    deltas.push(delta);
  }
  return deltas;
}

before(async () => {
  server = await startLiveServer();
  client = connect(server.apiKey);
});

after(async () => {
  client?.close();
  await server?.stop();
});

test("complete answers with text, usage, cost and routing", async () => {
  const completion = await client.complete({ model: server.models.chat, messages: HELLO });

  assert.ok(completion.text.length > 0);
  assert.equal(completion.text, completion.message?.content);
  assert.equal(completion.modelGroup, server.models.chat);
  assert.equal(completion.deployment, "chat-instant");
  assert.equal(completion.finishReason, FinishReason.FINISH_REASON_STOP);
  const usage = completion.usage;
  assert.ok(usage !== undefined && usage.inputTokens > 0 && usage.outputTokens > 0);
  assert.equal(usage.totalTokens, usage.inputTokens + usage.outputTokens);
  assert.ok(completion.costUsd > 0);
  assert.deepEqual(
    completion.attempts.map((a) => a.deployment),
    ["chat-instant"],
  );
});

test("an alias answers from its group", async () => {
  const completion = await client.complete({ model: server.models.alias, messages: HELLO });

  assert.equal(completion.modelGroup, server.models.chat);
});

test("stream yields every delta, then the final usage", async () => {
  // The simulator's answer is a function of the seed: the same request,
  // unstreamed, says what the deltas must add up to.
  const request = { model: server.models.chat, messages: HELLO, seed: 7, cache: NO_CACHE };
  const whole = await client.complete(request);
  const stream = client.stream(request);

  const deltas: Delta[] = [];
  for await (const delta of stream) {
    assert.equal(stream.final, undefined, "final arrives after the last delta");
    deltas.push(delta);
  }

  assert.ok(deltas.length > 0);
  assert.equal(deltas.map((d) => d.content).join(""), whole.text);
  const final = stream.final;
  assert.ok(final !== undefined);
  assert.equal(final.deployment, "chat-instant");
  assert.equal(final.finishReason, FinishReason.FINISH_REASON_STOP);
  assert.deepEqual(final.usage, whole.usage);
  assert.ok(final.costUsd > 0);
});

test("a paced stream arrives as many deltas that add up to the answer", async () => {
  const request = { model: server.models.stream, messages: HELLO, seed: 7, cache: NO_CACHE };
  const whole = await client.complete(request);
  const stream = client.stream(request);
  const deltas = await drain(stream);

  assert.ok(deltas.length >= 2, `${deltas.length} deltas`);
  assert.equal(deltas.map((d) => d.content).join(""), whole.text);
  assert.deepEqual(stream.final?.usage, whole.usage);
});

test("a stream is iterated once", async () => {
  const stream = client.stream({ model: server.models.chat, messages: HELLO });
  await drain(stream);

  assert.throws(() => stream[Symbol.asyncIterator](), /only once/);
});

test("an unknown model is NOT_FOUND with its ErrorInfo reason", async () => {
  const err = await rejection(client.complete({ model: "no-such-model", messages: HELLO }));

  const details = errorDetails(err);
  assert.equal(details.code, status.NOT_FOUND);
  assert.equal(details.reason, "MODEL_NOT_FOUND");
  assert.equal(details.errorInfo?.domain, DOMAIN);
  assert.deepEqual(details.metadata, { model: "no-such-model" });
});

test("a stream's error carries the same details", async () => {
  const err = await rejection(drain(client.stream({ model: "no-such-model", messages: HELLO })));

  const details = errorDetails(err);
  assert.equal(details.code, status.NOT_FOUND);
  assert.equal(details.reason, "MODEL_NOT_FOUND");
});

test("past its limit a key is RESOURCE_EXHAUSTED, with the RetryInfo delay", async () => {
  const limited = connect(server.limitedKey);
  try {
    for (let i = 0; i < server.limitedRpm; i++) {
      await limited.complete({ model: server.models.chat, messages: HELLO });
    }
    const err = await rejection(limited.complete({ model: server.models.chat, messages: HELLO }));

    const details = errorDetails(err);
    assert.equal(details.code, status.RESOURCE_EXHAUSTED);
    assert.equal(details.reason, "CAPACITY_EXHAUSTED");
    const delay = details.retryInfo?.retryDelay;
    assert.ok(delay !== undefined);
    assert.equal(details.retryAfterMs, delay.seconds * 1000 + delay.nanos / 1e6);
    // The live server's window is 600 s; the key waits for most of it.
    assert.ok(details.retryAfterMs > 1_000 && details.retryAfterMs <= 600_000 + 1_000);
    assert.equal(details.quotaViolations.length, 1);
    assert.equal(details.quotaViolations[0]?.subject, details.metadata.limit);
  } finally {
    limited.close();
  }
});

test("a deadline that expires is DEADLINE_EXCEEDED", async () => {
  const started = Date.now();
  const err = await rejection(
    client.complete({ model: server.models.slow, messages: HELLO }, { timeoutMs: 200 }),
  );

  assert.equal(errorDetails(err).code, status.DEADLINE_EXCEEDED);
  assert.ok(Date.now() - started < server.slowMs, "failed at the deadline, not at the answer");
});

test("the client's default deadline bounds a stream", async () => {
  const hasty = connect(server.apiKey, 200);
  try {
    const err = await rejection(drain(hasty.stream({ model: server.models.slow, messages: HELLO })));

    assert.equal(errorDetails(err).code, status.DEADLINE_EXCEEDED);
  } finally {
    hasty.close();
  }
});

test("an aborted signal cancels a stream in flight", async () => {
  const controller = new AbortController();
  const stream = client.stream(
    { model: server.models.slow, messages: HELLO },
    { signal: controller.signal },
  );
  const started = Date.now();
  const iterator = stream[Symbol.asyncIterator]();
  const next = iterator.next();
  controller.abort();

  const err = await rejection(next);
  assert.equal(errorDetails(err).code, status.CANCELLED);
  assert.ok(Date.now() - started < server.slowMs, "cancelled at once, not at the answer");
});

test("a wrong key is UNAUTHENTICATED", async () => {
  const stranger = connect("sk-not-a-key");
  try {
    const err = await rejection(stranger.complete({ model: server.models.chat, messages: HELLO }));

    const details = errorDetails(err);
    assert.equal(details.code, status.UNAUTHENTICATED);
    assert.equal(details.reason, "UNAUTHENTICATED");
  } finally {
    stranger.close();
  }
});

test("listModels lists the groups, their deployments and the aliases", async () => {
  const models = await client.listModels();

  assert.deepEqual(
    models.groups.map((g) => [g.name, g.deployments.map((d) => d.id)]).sort(),
    [
      [server.models.chat, ["chat-instant"]],
      [server.models.slow, ["slow-sluggish"]],
      [server.models.stream, ["stream-fast"]],
    ],
  );
  assert.deepEqual(
    models.aliases.map((a) => [a.name, a.target]),
    [[server.models.alias, server.models.chat]],
  );
});

test("the README example prints the completion's text", async () => {
  const { stdout, stderr } = await run(
    process.execPath,
    [join(PACKAGE_ROOT, "dist", "examples", "complete.js")],
    {
      env: { ...process.env, SWITCHBOARD_TARGET: server.target, SWITCHBOARD_API_KEY: server.apiKey },
      timeout: 30_000,
    },
  );

  assert.equal(stderr, "");
  const lines = stdout.trimEnd().split("\n");
  assert.equal(lines.length, 1);
  assert.match(lines[0] ?? "", /^\S+( \S+)+$/, "a sentence of the simulator's words");
});

// The cache gateway lives for the whole run, so each of these tests asks
// questions and names documents no other call asks or names: what another
// test stored can never make one of them hit or miss.

/** A question no other call of the run asks; `cache` as given. */
function question(model: string, cache?: CompleteInput["cache"]): CompleteInput {
  return { model, messages: [{ role: "user", content: `Say something about ${randomUUID()}.` }], cache };
}

const documentId = (): string => `doc-${randomUUID()}`;

// The gateway stamps an answer with its own reading of this machine's clock.
const CLOCK_SLACK_MS = 1_000;

/** A client of the cache gateway, closed after `body`. */
async function withCached<T>(apiKey: string, body: (c: SwitchboardClient) => Promise<T>): Promise<T> {
  const cached = connect(apiKey, 20_000, server.cacheTarget);
  try {
    return await body(cached);
  } finally {
    cached.close();
  }
}

test("a repeated call is answered from the cache, and says so", async () => {
  await withCached(server.apiKey, async (cached) => {
    const request = question(server.models.chat);
    const before = Date.now();
    const first = await cached.complete(request);
    const second = await cached.complete(request);
    const after = Date.now();

    assert.equal(first.cacheHit, false);
    assert.equal(first.cache, undefined);
    assert.ok(first.costUsd > 0);
    assert.equal(second.cacheHit, true);
    assert.equal(second.text, first.text);
    assert.equal(second.costUsd, 0);
    assert.deepEqual(second.attempts, []);
    const hit = second.cache;
    assert.ok(hit !== undefined);
    assert.equal(hit.kind, CacheKind.CACHE_KIND_EXACT);
    assert.equal(hit.similarity, 1);
    assert.equal(hit.costSavedUsd, first.costUsd);
    assert.ok(hit.created instanceof Date);
    const created = hit.created.getTime();
    assert.ok(
      created >= before - CLOCK_SLACK_MS && created <= after + CLOCK_SLACK_MS,
      `created ${hit.created.toISOString()}`,
    );

    const fresh = await cached.complete({ ...request, cache: { noCache: true } });
    assert.equal(fresh.cacheHit, false);
  });
});

test("a repeated stream replays the stored deltas", async () => {
  await withCached(server.apiKey, async (cached) => {
    const request = question(server.models.stream);
    const stream = cached.stream(request);
    const pieces = (await drain(stream)).map((d) => d.content);
    const again = cached.stream(request);
    const replayed = (await drain(again)).map((d) => d.content);

    assert.ok(pieces.length >= 2, `${pieces.length} deltas`);
    assert.deepEqual(replayed, pieces);
    assert.equal(stream.final?.cacheHit, false);
    assert.equal(stream.final?.cache, undefined);
    const final = again.final;
    assert.ok(final !== undefined);
    assert.equal(final.cacheHit, true);
    assert.equal(final.costUsd, 0);
    assert.equal(final.cache?.kind, CacheKind.CACHE_KIND_EXACT);
    assert.equal(final.cache?.costSavedUsd, stream.final?.costUsd);
  });
});

test("invalidateCache drops the answers built on a tag, and says how many", async () => {
  await withCached(server.apiKey, async (cached) => {
    const doc = documentId();
    const requests = [
      question(server.models.chat, { tags: [doc, documentId()] }),
      question(server.models.chat, { tags: [doc] }),
      question(server.models.chat, { tags: [documentId()] }),
    ];
    const hits = async (): Promise<boolean[]> => {
      const out: boolean[] = [];
      for (const request of requests) {
        out.push((await cached.complete(request)).cacheHit);
      }
      return out;
    };
    assert.deepEqual(await hits(), [false, false, false]);

    const removed = await withCached(server.adminKey, (admin) => admin.invalidateCache({ tags: [doc] }));

    assert.equal(removed, 2);
    assert.deepEqual(await hits(), [false, false, true]);
  });
});

test("invalidateCache drops a namespace and nothing else", async () => {
  await withCached(server.apiKey, async (cached) => {
    const namespace = documentId();
    const inside = question(server.models.chat, { namespace });
    const outside = question(server.models.chat);
    await cached.complete(inside);
    await cached.complete(outside);

    const removed = await withCached(server.adminKey, (admin) => admin.invalidateCache({ namespace }));

    assert.equal(removed, 1);
    assert.equal((await cached.complete(inside)).cacheHit, false);
    assert.equal((await cached.complete(outside)).cacheHit, true);
  });
});

test("getStats shows the key its own line, with the calls it made", async () => {
  await client.complete(question(server.models.chat));
  const stats = await client.getStats(StatsPeriod.STATS_PERIOD_DAY);

  assert.equal(stats.period, StatsPeriod.STATS_PERIOD_DAY);
  assert.deepEqual(
    stats.keys.map((k) => k.name),
    ["client"],
  );
  const calls = stats.keys[0]?.calls;
  assert.ok(calls !== undefined && calls.requests >= 1, JSON.stringify(calls));
  assert.ok(calls.spendUsd > 0);
  assert.deepEqual(stats.providers, []);
});

test("listModels shows the caches, and none without one", async () => {
  await withCached(server.apiKey, async (cached) => {
    await cached.complete(question(server.models.chat));
    const { caches } = await cached.listModels();

    const exact = caches.find((c) => c.name === "exact");
    assert.ok(exact !== undefined, JSON.stringify(caches));
    assert.equal(exact.backend, "memory");
    assert.ok(exact.entries >= 1);
    assert.ok(exact.bytes !== undefined && exact.bytes > 0);
  });
  assert.deepEqual((await client.listModels()).caches, []);
});

test("invalidateCache is refused to a non-admin key, without a cache, or with nothing named", async () => {
  const { cacheTarget, target, apiKey, adminKey } = server;
  const cases = [
    { target: cacheTarget, key: apiKey, tags: ["doc"], code: status.PERMISSION_DENIED, reason: "ADMIN_REQUIRED" },
    { target, key: adminKey, tags: ["doc"], code: status.FAILED_PRECONDITION, reason: "CACHE_DISABLED" },
    { target: cacheTarget, key: adminKey, tags: [], code: status.INVALID_ARGUMENT, reason: "INVALID_REQUEST" },
  ];
  for (const { target, key, tags, code, reason } of cases) {
    const caller = connect(key, 20_000, target);
    try {
      const details = errorDetails(await rejection(caller.invalidateCache({ tags })));

      assert.equal(details.code, code);
      assert.equal(details.reason, reason);
      if (code === status.INVALID_ARGUMENT) {
        assert.deepEqual(details.fieldViolations.map((v) => v.field), ["tags"]);
      }
    } finally {
      caller.close();
    }
  }
});

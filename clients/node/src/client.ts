/**
 * A thin, typed layer over the generated grpc-js stubs: promises instead of
 * callbacks, an async-iterable stream that cancels the call when the caller
 * stops reading, the caller's key on every call, and per-call deadlines.
 */
import {
  type CallOptions as GrpcCallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientReadableStream,
  type ClientUnaryCall,
  credentials as grpcCredentials,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";

import {
  CompleteRequest,
  type CompleteResponse,
  type DeepPartial,
  type Delta,
  type Final,
  GatewayClient,
  GetStatsRequest,
  type GetStatsResponse,
  InvalidateCacheRequest,
  type InvalidateCacheResponse,
  ListModelsRequest,
  type ListModelsResponse,
  type Message,
  Role,
  StatsPeriod,
  type StreamCompleteResponse,
} from "./gen/switchboard/v1/gateway.js";

export interface ClientOptions {
  /** The caller key, sent as `authorization: Bearer <key>` on every call. */
  apiKey?: string;
  /**
   * How to reach the gateway. TLS with the system's roots when omitted, so a
   * key never crosses the network in the clear by accident; pass
   * `credentials.createInsecure()` for a plaintext gateway such as a local one.
   */
  credentials?: ChannelCredentials;
  /** The deadline of every call that gives none of its own, in milliseconds. */
  timeoutMs?: number;
  /** grpc-js channel options (keepalive, message sizes, ...). */
  channelOptions?: ChannelOptions;
}

export interface CallOptions {
  /** The call's deadline, from now, in milliseconds; overrides the client's. */
  timeoutMs?: number;
  /** Cancels the call (it fails with CANCELLED) when aborted. */
  signal?: AbortSignal;
  /** Extra request metadata, e.g. `traceparent`. */
  metadata?: Record<string, string>;
}

/** A role by its proto enum or its OpenAI-style name. */
export type RoleName = "system" | "user" | "assistant" | "tool";

/** A message as callers write it: OpenAI-style names allowed, every field but `role` optional. */
export type MessageInput = Omit<DeepPartial<Message>, "role"> & { role: Role | RoleName };

/** A CompleteRequest as callers write it: `model` and `messages`, the rest optional. */
export type CompleteInput = Omit<DeepPartial<CompleteRequest>, "model" | "messages"> & {
  model: string;
  messages: MessageInput[];
};

/**
 * What InvalidateCache drops: the answers built on any of `tags` (only those
 * of `namespace`, when both are given), or every answer of `namespace`.
 */
export type InvalidateCacheInput = DeepPartial<InvalidateCacheRequest>;

/**
 * Complete's answer, with the assistant's text at hand. `cache` is set when the
 * answer came from the gateway's cache (`cacheHit`); such an answer costs 0.
 */
export interface Completion extends CompleteResponse {
  /** The assistant message's content. */
  text: string;
}

const ROLES: Record<RoleName, Role> = {
  system: Role.ROLE_SYSTEM,
  user: Role.ROLE_USER,
  assistant: Role.ROLE_ASSISTANT,
  tool: Role.ROLE_TOOL,
};

function toRequest(input: CompleteInput): CompleteRequest {
  return CompleteRequest.fromPartial({
    ...input,
    messages: input.messages.map((m) => ({
      ...m,
      role: typeof m.role === "string" ? ROLES[m.role] : m.role,
    })),
  });
}

/**
 * The deltas of one StreamComplete call, then its final event in `final`.
 *
 * The call starts when iteration starts. Leaving the loop early (`break`,
 * `return`, a throw) cancels the call, so the gateway stops the upstream
 * generation instead of paying for tokens nobody reads.
 */
export class CompletionStream implements AsyncIterable<Delta> {
  /** The usage, cost and routing facts; set once the stream ended normally. */
  final: Final | undefined;
  #start: (() => ClientReadableStream<StreamCompleteResponse>) | undefined;

  constructor(start: () => ClientReadableStream<StreamCompleteResponse>) {
    this.#start = start;
  }

  [Symbol.asyncIterator](): AsyncIterator<Delta> {
    const start = this.#start;
    if (start === undefined) {
      throw new Error("a CompletionStream can be iterated only once");
    }
    this.#start = undefined;
    return this.#events(start());
  }

  async *#events(call: ClientReadableStream<StreamCompleteResponse>): AsyncGenerator<Delta> {
    let ended = false;
    try {
      for await (const event of call as AsyncIterable<StreamCompleteResponse>) {
        if (event.delta !== undefined) {
          yield event.delta;
        } else if (event.final !== undefined) {
          this.final = event.final;
        }
      }
      ended = true;
    } finally {
      if (!ended) {
        call.cancel();
      }
    }
    if (this.final === undefined) {
      throw new Error("StreamComplete ended without its final event");
    }
  }
}

/** A Switchboard client: one HTTP/2 channel, shared by every call. */
export class SwitchboardClient {
  readonly #stub: GatewayClient;
  readonly #apiKey: string | undefined;
  readonly #timeoutMs: number | undefined;

  constructor(target: string, options: ClientOptions = {}) {
    this.#stub = new GatewayClient(
      target,
      options.credentials ?? grpcCredentials.createSsl(),
      options.channelOptions,
    );
    this.#apiKey = options.apiKey;
    this.#timeoutMs = options.timeoutMs;
  }

  /** The whole completion at once. Rejects with a grpc-js ServiceError; see errorDetails(). */
  complete(request: CompleteInput, options: CallOptions = {}): Promise<Completion> {
    return new Promise((resolve, reject) => {
      const call = this.#stub.complete(
        toRequest(request),
        this.#metadata(options),
        this.#callOptions(options),
        (err: ServiceError | null, response: CompleteResponse) => {
          if (err !== null) {
            reject(err);
          } else {
            resolve({ ...response, text: response.message?.content ?? "" });
          }
        },
      );
      cancelOnAbort(call, options.signal);
    });
  }

  /** The completion as it is generated: `for await (const delta of stream)`, then `stream.final`. */
  stream(request: CompleteInput, options: CallOptions = {}): CompletionStream {
    const message = toRequest(request);
    return new CompletionStream(() => {
      const call = this.#stub.streamComplete(
        message,
        this.#metadata(options),
        this.#callOptions(options),
      );
      cancelOnAbort(call, options.signal);
      return call;
    });
  }

  /** The model groups, their deployments, the aliases, and the caches' sizes (none without a cache). */
  listModels(options: CallOptions = {}): Promise<ListModelsResponse> {
    return new Promise((resolve, reject) => {
      const call = this.#stub.listModels(
        ListModelsRequest.create(),
        this.#metadata(options),
        this.#callOptions(options),
        (err: ServiceError | null, response: ListModelsResponse) => {
          if (err !== null) {
            reject(err);
          } else {
            resolve(response);
          }
        },
      );
      cancelOnAbort(call, options.signal);
    });
  }

  /**
   * Drops cached answers and resolves to how many it removed: for when a
   * document prompts were built from (their `cache.tags`) changed, whose
   * answers would otherwise be served until they expire.
   *
   * Rejects with PERMISSION_DENIED (reason `ADMIN_REQUIRED`) unless the key is
   * an admin one, when the gateway has keys; FAILED_PRECONDITION (reason
   * `CACHE_DISABLED`) from a gateway without a cache; INVALID_ARGUMENT when
   * neither `namespace` nor `tags` is given.
   */
  invalidateCache(request: InvalidateCacheInput, options: CallOptions = {}): Promise<number> {
    return new Promise((resolve, reject) => {
      const call = this.#stub.invalidateCache(
        InvalidateCacheRequest.fromPartial(request),
        this.#metadata(options),
        this.#callOptions(options),
        (err: ServiceError | null, response: InvalidateCacheResponse) => {
          if (err !== null) {
            reject(err);
          } else {
            resolve(response.removed);
          }
        },
      );
      cancelOnAbort(call, options.signal);
    });
  }

  /**
   * Calls, errors, latency, tokens, spend and cache hits per model group,
   * deployment, caller key, team and provider over the current UTC hour, day
   * or month, or all time, with spend against each budget. A key that is not
   * an admin key sees only its own key and team lines. Default: the day.
   */
  getStats(
    period: StatsPeriod = StatsPeriod.STATS_PERIOD_DAY,
    options: CallOptions = {},
  ): Promise<GetStatsResponse> {
    return new Promise((resolve, reject) => {
      const call = this.#stub.getStats(
        GetStatsRequest.create({ period }),
        this.#metadata(options),
        this.#callOptions(options),
        (err: ServiceError | null, response: GetStatsResponse) => {
          if (err !== null) {
            reject(err);
          } else {
            resolve(response);
          }
        },
      );
      cancelOnAbort(call, options.signal);
    });
  }

  /** Closes the channel; calls in flight fail with CANCELLED or UNAVAILABLE. */
  close(): void {
    this.#stub.close();
  }

  #metadata(options: CallOptions): Metadata {
    const metadata = new Metadata();
    for (const [key, value] of Object.entries(options.metadata ?? {})) {
      metadata.set(key, value);
    }
    // The client's key wins over a stray `authorization` entry: the server
    // refuses calls that carry two.
    if (this.#apiKey !== undefined) {
      metadata.set("authorization", `Bearer ${this.#apiKey}`);
    }
    return metadata;
  }

  #callOptions(options: CallOptions): Partial<GrpcCallOptions> {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    return timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
  }
}

function cancelOnAbort(call: ClientUnaryCall | ClientReadableStream<unknown>, signal?: AbortSignal): void {
  if (signal === undefined) {
    return;
  }
  if (signal.aborted) {
    call.cancel();
    return;
  }
  const onAbort = (): void => call.cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  // A long-lived signal shared by many calls must not keep every finished call alive.
  call.on("status", () => signal.removeEventListener("abort", onAbort));
}

/** A client of the gateway at `target` (`host:port`, or any grpc-js target such as `dns:///host:443`). */
export function createClient(target: string, options: ClientOptions = {}): SwitchboardClient {
  return new SwitchboardClient(target, options);
}

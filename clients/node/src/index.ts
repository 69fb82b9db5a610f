/**
 * @switchboard/client: a TypeScript client for Switchboard's gRPC API.
 *
 * grpc-js's `credentials`, `Metadata` and `status` are re-exported so a caller
 * needs no direct dependency on it (and cannot end up with a second copy whose
 * ChannelCredentials this one rejects).
 */
export { credentials, Metadata, status } from "@grpc/grpc-js";
export type { ChannelCredentials, ServiceError } from "@grpc/grpc-js";

export {
  type CallOptions,
  type ClientOptions,
  type CompleteInput,
  type Completion,
  CompletionStream,
  createClient,
  type InvalidateCacheInput,
  type MessageInput,
  type RoleName,
  SwitchboardClient,
} from "./client.js";
export { DOMAIN, type ErrorDetails, errorDetails } from "./errors.js";
export * from "./gen/switchboard/v1/gateway.js";

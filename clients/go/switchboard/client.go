// Package switchboard is a small layer over the generated Switchboard stubs
// (switchboard.dev/clients/go/switchboardv1): it dials with the caller's key,
// builds requests, reads a stream as deltas plus its final event, and decodes
// the google.rpc error details the gateway sends.
//
// Errors are returned as the gRPC status errors the stubs produce, unwrapped,
// so status.Code(err) works on them; ErrorDetails decodes their details.
//
// An answer the gateway's cache gave has CacheHit set and its Cache field
// says how (exact or semantic, the cost it saved); CacheControl on the
// request sets its namespace and the tags InvalidateCache removes it by.
package switchboard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	pb "switchboard.dev/clients/go/switchboardv1"
)

// Client is a connection to one Switchboard gateway. It is safe for
// concurrent use; Close it when done.
type Client struct {
	conn    *grpc.ClientConn
	gateway pb.GatewayClient
}

// Option configures Dial.
type Option func(*settings)

type settings struct {
	apiKey      string
	tlsConfig   *tls.Config
	useTLS      bool
	useInsecure bool
	dialOptions []grpc.DialOption
}

// WithAPIKey sends `authorization: Bearer <key>` on every call. It is sent
// over plaintext too when WithInsecure was chosen, since that choice is the
// caller's (a loopback or a sidecar-encrypted link).
func WithAPIKey(key string) Option {
	return func(s *settings) { s.apiKey = key }
}

// WithTLS connects over TLS with config; nil means the system's roots. TLS
// with the system's roots is also what Dial uses when no transport is named.
func WithTLS(config *tls.Config) Option {
	return func(s *settings) { s.useTLS, s.tlsConfig = true, config }
}

// WithInsecure connects over plaintext.
func WithInsecure() Option {
	return func(s *settings) { s.useInsecure = true }
}

// WithDialOptions passes options through to grpc.NewClient, for what this
// package does not wrap (interceptors, stats handlers, keepalive).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(s *settings) { s.dialOptions = append(s.dialOptions, opts...) }
}

// Dial connects to the gateway at target (for example "127.0.0.1:50051" or
// "dns:///gateway.internal:443") and waits until the connection is ready, so a
// wrong address or a refused connection is reported here rather than by the
// first call. It gives up when ctx ends or the first connection attempt fails.
func Dial(ctx context.Context, target string, opts ...Option) (*Client, error) {
	var s settings
	for _, opt := range opts {
		opt(&s)
	}
	if s.useTLS && s.useInsecure {
		return nil, errors.New("switchboard: WithTLS and WithInsecure are exclusive")
	}
	transport := credentials.NewTLS(s.tlsConfig)
	if s.useInsecure {
		transport = insecure.NewCredentials()
	}
	dialOptions := []grpc.DialOption{grpc.WithTransportCredentials(transport)}
	if s.apiKey != "" {
		dialOptions = append(dialOptions, grpc.WithPerRPCCredentials(bearer(s.apiKey)))
	}
	dialOptions = append(dialOptions, s.dialOptions...)
	conn, err := grpc.NewClient(target, dialOptions...)
	if err != nil {
		return nil, fmt.Errorf("switchboard: %w", err)
	}
	if err := awaitReady(ctx, conn); err != nil {
		_ = conn.Close()
		over := "TLS"
		if s.useInsecure {
			over = "plaintext"
		}
		return nil, fmt.Errorf("switchboard: connecting to %s over %s: %w", target, over, err)
	}
	return &Client{conn: conn, gateway: pb.NewGatewayClient(conn)}, nil
}

// awaitReady returns once conn is ready, or why it is not.
func awaitReady(ctx context.Context, conn *grpc.ClientConn) error {
	conn.Connect()
	for {
		state := conn.GetState()
		switch state {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			// gRPC keeps the cause to itself; its logs (GRPC_GO_LOG_SEVERITY_LEVEL=info) name it.
			return fmt.Errorf("connection failed (%s)", state)
		}
		if !conn.WaitForStateChange(ctx, state) {
			return ctx.Err()
		}
	}
}

// Close closes the connection; calls in flight fail with CANCELED.
func (c *Client) Close() error {
	return c.conn.Close()
}

// Gateway is the generated stub on this connection, for what the helpers do
// not cover.
func (c *Client) Gateway() pb.GatewayClient {
	return c.gateway
}

// Complete asks for the whole completion at once.
func (c *Client) Complete(ctx context.Context, req *pb.CompleteRequest, opts ...grpc.CallOption) (*pb.CompleteResponse, error) {
	return c.gateway.Complete(ctx, req, opts...)
}

// ListModels lists the model groups, their deployments and the aliases, and
// the caches with their sizes (none when caching is off).
func (c *Client) ListModels(ctx context.Context, opts ...grpc.CallOption) (*pb.ListModelsResponse, error) {
	return c.gateway.ListModels(ctx, &pb.ListModelsRequest{}, opts...)
}

// InvalidateCache removes the cached answers built on any of tags (only those
// of namespace, when namespace is not empty), or every answer of namespace
// when tags is empty, and returns how many it removed. Tag requests with the
// documents their prompts were built from (CacheControl.Tags), so that a
// document that changes takes its answers with it instead of their being
// served until they expire.
//
// When the gateway has caller keys, only an admin key may call it
// (PermissionDenied, reason ADMIN_REQUIRED); a gateway without a cache
// answers FailedPrecondition, reason CACHE_DISABLED; and neither namespace nor
// tags is InvalidArgument.
func (c *Client) InvalidateCache(ctx context.Context, namespace string, tags []string, opts ...grpc.CallOption) (removed uint64, err error) {
	resp, err := c.gateway.InvalidateCache(ctx, &pb.InvalidateCacheRequest{Namespace: namespace, Tags: tags}, opts...)
	if err != nil {
		return 0, err
	}
	return resp.GetRemoved(), nil
}

// GetStats reports calls, errors, latency, tokens, spend and cache hits per
// model group, deployment, caller key, team and provider over the current UTC
// hour, day or month, or all time (pb.StatsPeriod_STATS_PERIOD_TOTAL), with
// spend against each budget. A key that is not an admin key sees only its own
// key and team lines. pb.StatsPeriod_STATS_PERIOD_UNSPECIFIED means the day.
func (c *Client) GetStats(ctx context.Context, period pb.StatsPeriod, opts ...grpc.CallOption) (*pb.GetStatsResponse, error) {
	return c.gateway.GetStats(ctx, &pb.GetStatsRequest{Period: period}, opts...)
}

// bearer is the per-call credential the gateway authenticates callers by.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: the transport is the caller's explicit
// choice (see WithAPIKey), and TLS is the default.
func (bearer) RequireTransportSecurity() bool {
	return false
}

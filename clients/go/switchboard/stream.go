package switchboard

import (
	"context"
	"errors"
	"io"
	"iter"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "switchboard.dev/clients/go/switchboardv1"
)

// Stream is one StreamComplete call: range over Deltas, then read Final.
//
//	stream := client.Stream(ctx, req)
//	for delta, err := range stream.Deltas() {
//		if err != nil {
//			return err
//		}
//		fmt.Print(delta.GetContent())
//	}
//	usage := stream.Final().GetUsage()
//
// A Stream is read by one goroutine, once.
type Stream struct {
	ctx     context.Context
	gateway pb.GatewayClient
	req     *pb.CompleteRequest
	opts    []grpc.CallOption
	started bool
	final   *pb.Final
	text    strings.Builder
}

// Stream prepares a StreamComplete call; it starts when Deltas is ranged
// over, so every failure, including one to start, surfaces in one place.
func (c *Client) Stream(ctx context.Context, req *pb.CompleteRequest, opts ...grpc.CallOption) *Stream {
	return &Stream{ctx: ctx, gateway: c.gateway, req: req, opts: opts}
}

// Deltas runs the call and yields its deltas in order. A failure ends the
// sequence: it is yielded once, with a nil delta, as the gRPC status error
// (a stream that breaks the protocol, with no final event or events after it,
// is INTERNAL). Breaking out of the loop cancels the call, so the gateway
// stops paying for tokens nobody reads.
func (s *Stream) Deltas() iter.Seq2[*pb.Delta, error] {
	return func(yield func(*pb.Delta, error) bool) {
		if s.started {
			yield(nil, errors.New("switchboard: a Stream's deltas can be read only once"))
			return
		}
		s.started = true
		ctx, cancel := context.WithCancel(s.ctx)
		defer cancel()
		events, err := s.gateway.StreamComplete(ctx, s.req, s.opts...)
		if err != nil {
			yield(nil, err)
			return
		}
		var final *pb.Final
		for {
			event, err := events.Recv()
			if err == io.EOF {
				if final == nil {
					yield(nil, status.Error(codes.Internal, "switchboard: the stream ended without its final event"))
					return
				}
				s.final = final
				return
			}
			if err != nil {
				yield(nil, err)
				return
			}
			switch e := event.GetEvent().(type) {
			case *pb.StreamCompleteResponse_Delta:
				if final != nil {
					yield(nil, status.Error(codes.Internal, "switchboard: a delta came after the final event"))
					return
				}
				s.text.WriteString(e.Delta.GetContent())
				if !yield(e.Delta, nil) {
					return
				}
			case *pb.StreamCompleteResponse_Final:
				if final != nil {
					yield(nil, status.Error(codes.Internal, "switchboard: the stream sent two final events"))
					return
				}
				final = e.Final
			}
			// Any other event comes from a newer gateway and is skipped, as
			// the proto's compatibility rules expect of an older client.
		}
	}
}

// Final is the stream's last event (usage, cost, routing), once Deltas has
// run to a successful end; nil before that or after a failure.
func (s *Stream) Final() *pb.Final {
	return s.final
}

// Text is the content of the deltas yielded so far, concatenated.
func (s *Stream) Text() string {
	return s.text.String()
}

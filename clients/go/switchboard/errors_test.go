package switchboard_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"switchboard.dev/clients/go/switchboard"
)

func pack(t *testing.T, details ...*anypb.Any) error {
	t.Helper()
	return status.ErrorProto(&spb.Status{Code: int32(codes.InvalidArgument), Message: "bad", Details: details})
}

func mustAny(t *testing.T, msg proto.Message) *anypb.Any {
	t.Helper()
	packed, err := anypb.New(msg)
	if err != nil {
		t.Fatal(err)
	}
	return packed
}

func TestErrorDetailsDecodesEveryKind(t *testing.T) {
	info := mustAny(t, &errdetails.ErrorInfo{Reason: "INVALID_REQUEST", Domain: switchboard.Domain, Metadata: map[string]string{"k": "v"}})
	retry := mustAny(t, &errdetails.RetryInfo{RetryDelay: durationpb.New(1500 * time.Millisecond)})
	quota := mustAny(t, &errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "key:limited"}}})
	bad := mustAny(t, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "max_tokens", Description: "too many"}}})
	help := mustAny(t, &errdetails.Help{})
	// Wrapping must not hide the status.
	err := fmt.Errorf("calling: %w", pack(t, info, retry, quota, bad, help))

	d := switchboard.ErrorDetails(err)
	if d.Code != codes.InvalidArgument || d.Message != "bad" {
		t.Errorf("status = %v %q, want InvalidArgument \"bad\"", d.Code, d.Message)
	}
	if d.Reason() != "INVALID_REQUEST" || d.ErrorInfo.GetMetadata()["k"] != "v" {
		t.Errorf("ErrorInfo = %v", d.ErrorInfo)
	}
	if wait, ok := d.RetryAfter(); !ok || wait != 1500*time.Millisecond {
		t.Errorf("RetryAfter() = %v, %v; want 1.5s, true", wait, ok)
	}
	if d.QuotaFailure.GetViolations()[0].GetSubject() != "key:limited" {
		t.Errorf("QuotaFailure = %v", d.QuotaFailure)
	}
	if d.BadRequest.GetFieldViolations()[0].GetField() != "max_tokens" {
		t.Errorf("BadRequest = %v", d.BadRequest)
	}
	if len(d.Other) != 1 || !d.Other[0].MessageIs(&errdetails.Help{}) {
		t.Errorf("Other = %v, want the Help detail", d.Other)
	}
}

func TestErrorDetailsKeepsACorruptDetailAside(t *testing.T) {
	corrupt := &anypb.Any{TypeUrl: "type.googleapis.com/google.rpc.ErrorInfo", Value: []byte{0xff, 0xff}}
	d := switchboard.ErrorDetails(pack(t, corrupt))
	if d.Code != codes.InvalidArgument {
		t.Errorf("code = %v, want the status's own", d.Code)
	}
	if d.ErrorInfo != nil || len(d.Other) != 1 {
		t.Errorf("ErrorInfo = %v, Other = %v; want the corrupt detail in Other", d.ErrorInfo, d.Other)
	}
}

func TestErrorDetailsWithoutStatus(t *testing.T) {
	if d := switchboard.ErrorDetails(nil); d.Code != codes.OK || d.ErrorInfo != nil {
		t.Errorf("ErrorDetails(nil) = %+v, want OK and nothing else", d)
	}
	d := switchboard.ErrorDetails(errors.New("plain"))
	if d.Code != codes.Unknown || d.Message != "plain" {
		t.Errorf("ErrorDetails(plain error) = %+v, want Unknown \"plain\"", d)
	}
	if _, ok := d.RetryAfter(); ok || d.Reason() != "" {
		t.Errorf("a plain error has a RetryInfo or reason: %+v", d)
	}
}

func TestRetryAfterRejectsAnInvalidDelay(t *testing.T) {
	retry := mustAny(t, &errdetails.RetryInfo{RetryDelay: &durationpb.Duration{Seconds: 1, Nanos: -1}})
	if wait, ok := switchboard.ErrorDetails(pack(t, retry)).RetryAfter(); ok {
		t.Errorf("RetryAfter() = %v, true for a malformed duration", wait)
	}
}

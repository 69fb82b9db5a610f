package switchboard

import (
	"errors"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Domain is ErrorInfo.domain on every error the gateway itself reports.
const Domain = "switchboard.dev"

// Details is a failed call's status and its decoded google.rpc details, each
// nil where the gateway sent none.
type Details struct {
	Code    codes.Code
	Message string
	// ErrorInfo.Reason is the stable, UPPER_SNAKE_CASE name of the failure
	// (MODEL_NOT_FOUND, CAPACITY_EXHAUSTED, ...); Metadata holds its facts.
	ErrorInfo    *errdetails.ErrorInfo
	RetryInfo    *errdetails.RetryInfo
	QuotaFailure *errdetails.QuotaFailure
	BadRequest   *errdetails.BadRequest
	// Other holds details of any other type, undecoded.
	Other []*anypb.Any
}

// ErrorDetails decodes err's gRPC status (from the grpc-status-details-bin
// trailer). A nil err gives codes.OK; an error that carries no gRPC status
// gives codes.Unknown with its text. Wrapped status errors are found.
func ErrorDetails(err error) Details {
	st := statusOf(err)
	d := Details{Code: st.Code(), Message: st.Message()}
	for _, detail := range st.Proto().GetDetails() {
		// Unmarshalled by type rather than through status.Details(), which
		// needs each type registered globally. The first of a type is kept;
		// a detail that does not decode goes to Other rather than hiding
		// the status it came with.
		var decoded bool
		switch {
		case d.ErrorInfo == nil && detail.MessageIs((*errdetails.ErrorInfo)(nil)):
			d.ErrorInfo, decoded = decode(detail, &errdetails.ErrorInfo{})
		case d.RetryInfo == nil && detail.MessageIs((*errdetails.RetryInfo)(nil)):
			d.RetryInfo, decoded = decode(detail, &errdetails.RetryInfo{})
		case d.QuotaFailure == nil && detail.MessageIs((*errdetails.QuotaFailure)(nil)):
			d.QuotaFailure, decoded = decode(detail, &errdetails.QuotaFailure{})
		case d.BadRequest == nil && detail.MessageIs((*errdetails.BadRequest)(nil)):
			d.BadRequest, decoded = decode(detail, &errdetails.BadRequest{})
		}
		if !decoded {
			d.Other = append(d.Other, detail)
		}
	}
	return d
}

// statusOf is the status err carries, with its own message: status.FromError
// would replace that by the whole wrapped text.
func statusOf(err error) *status.Status {
	var carrier interface{ GRPCStatus() *status.Status }
	if errors.As(err, &carrier) {
		if st := carrier.GRPCStatus(); st != nil {
			return st
		}
	}
	st, _ := status.FromError(err)
	return st
}

func decode[M proto.Message](detail *anypb.Any, msg M) (M, bool) {
	if err := detail.UnmarshalTo(msg); err != nil {
		var none M
		return none, false
	}
	return msg, true
}

// Reason is ErrorInfo's reason, or "" without one.
func (d Details) Reason() string {
	return d.ErrorInfo.GetReason()
}

// RetryAfter is how long the gateway asks the caller to wait before trying
// again (RetryInfo.retry_delay); ok is false when it sent no RetryInfo, when
// waiting is not expected to help.
func (d Details) RetryAfter() (wait time.Duration, ok bool) {
	delay := d.RetryInfo.GetRetryDelay()
	if delay == nil {
		return 0, false
	}
	if err := delay.CheckValid(); err != nil {
		return 0, false
	}
	return max(0, delay.AsDuration()), true
}

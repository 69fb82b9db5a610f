package switchboard_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"switchboard.dev/clients/go/switchboard"
	pb "switchboard.dev/clients/go/switchboardv1"
)

func TestComplete(t *testing.T) {
	client := dial(t, live.APIKey)
	resp, err := client.Complete(callContext(t), switchboard.Request(live.Models.Chat, switchboard.User("Say hello.")))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	if resp.GetMessage().GetContent() == "" {
		t.Errorf("empty completion: %v", resp)
	}
	if got := resp.GetMessage().GetRole(); got != pb.Role_ROLE_ASSISTANT {
		t.Errorf("role = %v, want assistant", got)
	}
	checkUsage(t, resp.GetUsage())
	if resp.GetModelGroup() != live.Models.Chat || resp.GetDeployment() == "" {
		t.Errorf("answered by group %q deployment %q, want group %q", resp.GetModelGroup(), resp.GetDeployment(), live.Models.Chat)
	}
	if resp.GetCostUsd() <= 0 {
		t.Errorf("cost_usd = %v, want > 0 (the deployment is priced)", resp.GetCostUsd())
	}
	attempts := resp.GetAttempts()
	if len(attempts) == 0 || attempts[len(attempts)-1].GetOutcome() != pb.AttemptOutcome_ATTEMPT_OUTCOME_SUCCESS {
		t.Errorf("attempts = %v, want the last a success", attempts)
	}
}

func TestCompleteThroughAlias(t *testing.T) {
	client := dial(t, live.APIKey)
	resp, err := client.Complete(callContext(t), switchboard.Request(live.Models.Alias, switchboard.User("Say hello.")))
	if err != nil {
		t.Fatalf("Complete(%s): %v", live.Models.Alias, err)
	}
	if resp.GetModelGroup() != live.Models.Chat {
		t.Errorf("alias %q answered by group %q, want %q", live.Models.Alias, resp.GetModelGroup(), live.Models.Chat)
	}
}

func TestStream(t *testing.T) {
	client := dial(t, live.APIKey)
	// The simulator answers a seeded request with the same text every time,
	// so the whole answer is known before streaming it.
	seed := int64(20261202)
	req := switchboard.Request(live.Models.Stream, switchboard.User("Tell me a short story."))
	req.Seed = &seed
	whole, err := client.Complete(callContext(t), req)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	want := whole.GetMessage().GetContent()
	if want == "" {
		t.Fatal("the seeded answer is empty")
	}

	stream := client.Stream(callContext(t), req)
	var deltas []string
	for delta, err := range stream.Deltas() {
		if err != nil {
			t.Fatalf("stream failed after %d deltas: %v", len(deltas), err)
		}
		if stream.Final() != nil {
			t.Fatal("Final() is set before the stream ended")
		}
		deltas = append(deltas, delta.GetContent())
	}
	if len(deltas) < 2 {
		t.Errorf("%d deltas from a paced stream, want several", len(deltas))
	}
	if got := strings.Join(deltas, ""); got != want {
		t.Errorf("the %d deltas joined = %q, want the seeded answer %q", len(deltas), got, want)
	}
	if got := stream.Text(); got != want {
		t.Errorf("Text() = %q, want %q", got, want)
	}
	final := stream.Final()
	if final == nil {
		t.Fatal("no final event after a successful stream")
	}
	checkUsage(t, final.GetUsage())
	if final.GetModelGroup() != live.Models.Stream || final.GetDeployment() == "" || final.GetCostUsd() <= 0 {
		t.Errorf("final = %v, want the stream group's priced answer", final)
	}
	if final.GetFinishReason() == pb.FinishReason_FINISH_REASON_UNSPECIFIED {
		t.Errorf("final has no finish reason: %v", final)
	}
}

func TestStreamReadsOnce(t *testing.T) {
	client := dial(t, live.APIKey)
	stream := client.Stream(callContext(t), switchboard.Request(live.Models.Chat, switchboard.User("Hi.")))
	for _, err := range stream.Deltas() {
		if err != nil {
			t.Fatalf("first read: %v", err)
		}
		break // cancels the call
	}
	var second error
	for _, err := range stream.Deltas() {
		second = err
	}
	if second == nil {
		t.Error("a second read of the deltas succeeded, want an error")
	}
	if stream.Final() != nil {
		t.Error("Final() is set on a stream the caller left early")
	}
}

func TestNotFound(t *testing.T) {
	client := dial(t, live.APIKey)
	const model = "no-such-model"
	check := func(t *testing.T, err error) {
		t.Helper()
		d := switchboard.ErrorDetails(err)
		if d.Code != codes.NotFound {
			t.Fatalf("code = %v (%v), want NotFound", d.Code, err)
		}
		if d.ErrorInfo == nil {
			t.Fatalf("no ErrorInfo in %v", err)
		}
		if d.Reason() != "MODEL_NOT_FOUND" || d.ErrorInfo.GetDomain() != switchboard.Domain {
			t.Errorf("ErrorInfo = %v, want reason MODEL_NOT_FOUND in %s", d.ErrorInfo, switchboard.Domain)
		}
		if got := d.ErrorInfo.GetMetadata()["model"]; got != model {
			t.Errorf("ErrorInfo.metadata[model] = %q, want %q", got, model)
		}
		if _, ok := d.RetryAfter(); ok {
			t.Errorf("RetryInfo on a NOT_FOUND: %v", d.RetryInfo)
		}
	}
	t.Run("Complete", func(t *testing.T) {
		_, err := client.Complete(callContext(t), switchboard.Request(model, switchboard.User("Hi.")))
		check(t, err)
	})
	t.Run("Stream", func(t *testing.T) {
		stream := client.Stream(callContext(t), switchboard.Request(model, switchboard.User("Hi.")))
		var failure error
		n := 0
		for _, err := range stream.Deltas() {
			n++
			failure = err
		}
		if n != 1 {
			t.Errorf("the sequence had %d items, want the error alone", n)
		}
		check(t, failure)
		if stream.Final() != nil {
			t.Error("Final() is set on a failed stream")
		}
	})
}

func TestRateLimited(t *testing.T) {
	client := dial(t, live.LimitedKey)
	req := switchboard.Request(live.Models.Chat, switchboard.User("Hi."))
	// The key's calls in this window: one more than it may make.
	var err error
	for range live.LimitedRPM + 1 {
		if _, err = client.Complete(callContext(t), req); err != nil {
			break
		}
	}
	d := switchboard.ErrorDetails(err)
	if d.Code != codes.ResourceExhausted {
		t.Fatalf("call %d of a key allowed %d: code %v (%v), want ResourceExhausted", live.LimitedRPM+1, live.LimitedRPM, d.Code, err)
	}
	if d.Reason() != "CAPACITY_EXHAUSTED" || d.ErrorInfo.GetDomain() != switchboard.Domain {
		t.Errorf("ErrorInfo = %v, want CAPACITY_EXHAUSTED in %s", d.ErrorInfo, switchboard.Domain)
	}
	wait, ok := d.RetryAfter()
	if !ok {
		t.Fatalf("no RetryInfo in %v", err)
	}
	// The live server's window is 600 s; the wait is about what is left of
	// it (a little more as the limiter rounds up), so a unit slip shows.
	if wait <= 0 || wait > 2*600*time.Second {
		t.Errorf("RetryAfter() = %v, want about the key's 600 s window", wait)
	}
	if d.RetryInfo.GetRetryDelay().AsDuration() != wait {
		t.Errorf("RetryAfter() = %v, RetryInfo = %v", wait, d.RetryInfo)
	}
	if v := d.QuotaFailure.GetViolations(); len(v) == 0 || v[0].GetSubject() == "" {
		t.Errorf("QuotaFailure = %v, want the limit that refused", d.QuotaFailure)
	}
}

func TestDeadlineExceeded(t *testing.T) {
	client := dial(t, live.APIKey)
	slow := time.Duration(live.SlowMS) * time.Millisecond
	deadline := slow / 10
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	start := time.Now()
	_, err := client.Complete(ctx, switchboard.Request(live.Models.Slow, switchboard.User("Hi.")))
	elapsed := time.Since(start)
	if got := status.Code(err); got != codes.DeadlineExceeded {
		t.Fatalf("code = %v (%v), want DeadlineExceeded", got, err)
	}
	if elapsed >= slow {
		t.Errorf("the call took %v, want it to end at its %v deadline, before the %v answer", elapsed, deadline, slow)
	}
}

func TestWrongKey(t *testing.T) {
	for name, key := range map[string]string{"wrong": "sk-not-a-key", "none": ""} {
		t.Run(name, func(t *testing.T) {
			client := dial(t, key)
			_, err := client.Complete(callContext(t), switchboard.Request(live.Models.Chat, switchboard.User("Hi.")))
			if got := status.Code(err); got != codes.Unauthenticated {
				t.Fatalf("code = %v (%v), want Unauthenticated", got, err)
			}
		})
	}
}

func TestListModels(t *testing.T) {
	client := dial(t, live.APIKey)
	resp, err := client.ListModels(callContext(t))
	if err != nil {
		t.Fatalf("ListModels: %v", err)
	}
	var groups []string
	for _, g := range resp.GetGroups() {
		groups = append(groups, g.GetName())
		if len(g.GetDeployments()) == 0 {
			t.Errorf("group %q has no deployments", g.GetName())
		}
	}
	for _, want := range []string{live.Models.Chat, live.Models.Slow} {
		if !slices.Contains(groups, want) {
			t.Errorf("groups = %v, want %q among them", groups, want)
		}
	}
	found := slices.ContainsFunc(resp.GetAliases(), func(a *pb.Alias) bool {
		return a.GetName() == live.Models.Alias && a.GetTarget() == live.Models.Chat
	})
	if !found {
		t.Errorf("aliases = %v, want %s -> %s", resp.GetAliases(), live.Models.Alias, live.Models.Chat)
	}
}

func TestDialRefused(t *testing.T) {
	// A port that was free a moment ago and that nothing listens on now.
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().String()
	_ = listener.Close()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	client, err := switchboard.Dial(ctx, addr, switchboard.WithInsecure())
	if err == nil {
		_ = client.Close()
		t.Fatalf("Dial(%s) succeeded with nothing listening", addr)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial waited out its context (%v), want the refusal reported", err)
	}
}

func TestDialOptionsConflict(t *testing.T) {
	_, err := switchboard.Dial(t.Context(), live.Target, switchboard.WithInsecure(), switchboard.WithTLS(nil))
	if err == nil {
		t.Fatal("Dial with both WithInsecure and WithTLS succeeded")
	}
}

// TestExample runs the README's example program against the live server.
func TestExample(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the example: %v", err)
	}
	binary := filepath.Join(t.TempDir(), "complete")
	build := exec.CommandContext(contextFor(t, buildTimeout), goTool, "build", "-o", binary, "./examples/complete")
	build.Dir = moduleRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/complete: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(callContext(t), binary)
	cmd.Env = append(os.Environ(), "SWITCHBOARD_TARGET="+live.Target, "SWITCHBOARD_API_KEY="+live.APIKey)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("example: %v\n%s", err, stderr.String())
	}
	// The simulator's text differs from call to call, so only its shape is
	// known: one non-empty line of words.
	text, ok := strings.CutSuffix(string(out), "\n")
	if !ok || strings.TrimSpace(text) == "" || strings.Contains(text, "\n") {
		t.Errorf("example printed %q, want one line of completion text", out)
	}
}

func checkUsage(t *testing.T, usage *pb.Usage) {
	t.Helper()
	if usage.GetInputTokens() == 0 || usage.GetOutputTokens() == 0 {
		t.Errorf("usage = %v, want input and output tokens counted", usage)
	}
	if usage.GetTotalTokens() != usage.GetInputTokens()+usage.GetOutputTokens() {
		t.Errorf("usage = %v, want total = input + output", usage)
	}
}

func TestGetStats(t *testing.T) {
	client := dial(t, live.APIKey)
	if _, err := client.Complete(callContext(t), switchboard.Request(live.Models.Chat, switchboard.User("Say something."))); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	stats, err := client.GetStats(callContext(t), pb.StatsPeriod_STATS_PERIOD_DAY)
	if err != nil {
		t.Fatalf("GetStats: %v", err)
	}
	if stats.GetPeriod() != pb.StatsPeriod_STATS_PERIOD_DAY {
		t.Errorf("period = %v, want STATS_PERIOD_DAY", stats.GetPeriod())
	}
	keys := stats.GetKeys()
	if len(keys) != 1 || keys[0].GetName() != "client" {
		t.Fatalf("keys = %v, want only this key's own line", keys)
	}
	if keys[0].GetCalls().GetRequests() < 1 || keys[0].GetCalls().GetSpendUsd() <= 0 {
		t.Errorf("the key's calls = %v, want at least the call just made, priced", keys[0].GetCalls())
	}
	if len(stats.GetProviders()) != 0 {
		t.Errorf("providers = %v, want none for a key that is not an admin", stats.GetProviders())
	}
}

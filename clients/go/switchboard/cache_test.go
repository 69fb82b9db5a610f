package switchboard_test

import (
	"crypto/rand"
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"switchboard.dev/clients/go/switchboard"
	pb "switchboard.dev/clients/go/switchboardv1"
)

// The cache gateway lives for the whole run, so each test asks questions and
// names documents no other call asks or names: what another test stored can
// never make one of these hit or miss.

// question is a request no other call of the run makes, on model.
func question(model string, cache *pb.CacheControl) *pb.CompleteRequest {
	req := switchboard.Request(model, switchboard.User("Say something about "+rand.Text()+"."))
	req.Cache = cache
	return req
}

func document() string {
	return "doc-" + rand.Text()
}

// clockSlack allows for the gateway stamping an answer with its own reading
// of this machine's clock.
const clockSlack = time.Second

func sameCost(a, b float64) bool {
	return math.Abs(a-b) <= 1e-12
}

func TestCacheHit(t *testing.T) {
	client := dialTarget(t, live.CacheTarget, live.APIKey)
	req := question(live.Models.Chat, nil)
	before := time.Now()
	first, err := client.Complete(callContext(t), req)
	if err != nil {
		t.Fatalf("first Complete: %v", err)
	}
	second, err := client.Complete(callContext(t), req)
	if err != nil {
		t.Fatalf("second Complete: %v", err)
	}
	after := time.Now()

	if first.GetCacheHit() || first.GetCache() != nil {
		t.Errorf("the first call came from the cache: %v", first.GetCache())
	}
	if !second.GetCacheHit() {
		t.Fatalf("the repeated call was not a cache hit: %v", second)
	}
	if second.GetMessage().GetContent() != first.GetMessage().GetContent() {
		t.Errorf("hit text = %q, want the stored %q", second.GetMessage().GetContent(), first.GetMessage().GetContent())
	}
	if second.GetCostUsd() != 0 || len(second.GetAttempts()) != 0 {
		t.Errorf("a hit cost %v after %d attempts, want 0 and none", second.GetCostUsd(), len(second.GetAttempts()))
	}
	hit := second.GetCache()
	if hit.GetKind() != pb.CacheKind_CACHE_KIND_EXACT || hit.GetSimilarity() != 1 {
		t.Errorf("hit = %v, want an exact one of similarity 1", hit)
	}
	if first.GetCostUsd() <= 0 || !sameCost(hit.GetCostSavedUsd(), first.GetCostUsd()) {
		t.Errorf("cost saved = %v, want what the first call cost (%v)", hit.GetCostSavedUsd(), first.GetCostUsd())
	}
	created := hit.GetCreated().AsTime()
	if created.Before(before.Add(-clockSlack)) || created.After(after.Add(clockSlack)) {
		t.Errorf("created = %v, want between %v and %v", created, before, after)
	}

	req.Cache = &pb.CacheControl{NoCache: true}
	fresh, err := client.Complete(callContext(t), req)
	if err != nil {
		t.Fatalf("Complete with NoCache: %v", err)
	}
	if fresh.GetCacheHit() {
		t.Error("a NoCache call was answered from the cache")
	}
}

func TestCacheStreamHit(t *testing.T) {
	client := dialTarget(t, live.CacheTarget, live.APIKey)
	req := question(live.Models.Stream, nil)
	read := func() ([]string, *pb.Final) {
		t.Helper()
		stream := client.Stream(callContext(t), req)
		var deltas []string
		for delta, err := range stream.Deltas() {
			if err != nil {
				t.Fatalf("stream failed after %d deltas: %v", len(deltas), err)
			}
			deltas = append(deltas, delta.GetContent())
		}
		return deltas, stream.Final()
	}
	pieces, first := read()
	replayed, final := read()

	if len(pieces) < 2 || !slices.Equal(replayed, pieces) {
		t.Errorf("replayed %q, want the %d stored deltas %q", replayed, len(pieces), pieces)
	}
	if first.GetCacheHit() || first.GetCache() != nil {
		t.Errorf("the first stream came from the cache: %v", first.GetCache())
	}
	if !final.GetCacheHit() || final.GetCache().GetKind() != pb.CacheKind_CACHE_KIND_EXACT {
		t.Fatalf("the repeated stream's final = %v, want an exact cache hit", final)
	}
	if final.GetCostUsd() != 0 || !sameCost(final.GetCache().GetCostSavedUsd(), first.GetCostUsd()) {
		t.Errorf("hit cost %v, saved %v; want 0 and the first stream's %v", final.GetCostUsd(), final.GetCache().GetCostSavedUsd(), first.GetCostUsd())
	}
}

// hits says, for each request, whether asking it again is a cache hit.
func hits(t *testing.T, client *switchboard.Client, reqs ...*pb.CompleteRequest) []bool {
	t.Helper()
	var out []bool
	for _, req := range reqs {
		resp, err := client.Complete(callContext(t), req)
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		out = append(out, resp.GetCacheHit())
	}
	return out
}

func TestInvalidateCacheByTags(t *testing.T) {
	client := dialTarget(t, live.CacheTarget, live.APIKey)
	admin := dialTarget(t, live.CacheTarget, live.AdminKey)
	doc := document()
	reqs := []*pb.CompleteRequest{
		question(live.Models.Chat, &pb.CacheControl{Tags: []string{doc, document()}}),
		question(live.Models.Chat, &pb.CacheControl{Tags: []string{doc}}),
		question(live.Models.Chat, &pb.CacheControl{Tags: []string{document()}}),
	}
	if got := hits(t, client, reqs...); !slices.Equal(got, []bool{false, false, false}) {
		t.Fatalf("first asked, hits = %v, want none", got)
	}

	removed, err := admin.InvalidateCache(callContext(t), "", []string{doc})
	if err != nil {
		t.Fatalf("InvalidateCache: %v", err)
	}
	if removed != 2 {
		t.Errorf("removed = %d, want the 2 answers built on %s", removed, doc)
	}
	if got := hits(t, client, reqs...); !slices.Equal(got, []bool{false, false, true}) {
		t.Errorf("asked again, hits = %v, want only the unrelated answer kept", got)
	}
}

func TestInvalidateCacheByNamespace(t *testing.T) {
	client := dialTarget(t, live.CacheTarget, live.APIKey)
	admin := dialTarget(t, live.CacheTarget, live.AdminKey)
	namespace := document()
	inside := question(live.Models.Chat, &pb.CacheControl{Namespace: namespace})
	outside := question(live.Models.Chat, nil)
	hits(t, client, inside, outside)

	removed, err := admin.InvalidateCache(callContext(t), namespace, nil)
	if err != nil {
		t.Fatalf("InvalidateCache: %v", err)
	}
	if removed != 1 {
		t.Errorf("removed = %d, want the namespace's one answer", removed)
	}
	if got := hits(t, client, inside, outside); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("asked again, hits = %v, want the answer outside the namespace kept", got)
	}
}

func TestListModelsShowsCaches(t *testing.T) {
	client := dialTarget(t, live.CacheTarget, live.APIKey)
	hits(t, client, question(live.Models.Chat, nil))
	resp, err := client.ListModels(callContext(t))
	if err != nil {
		t.Fatalf("ListModels: %v", err)
	}
	i := slices.IndexFunc(resp.GetCaches(), func(c *pb.CacheStats) bool { return c.GetName() == "exact" })
	if i < 0 {
		t.Fatalf("caches = %v, want the exact cache", resp.GetCaches())
	}
	exact := resp.GetCaches()[i]
	if exact.GetBackend() != "memory" || exact.GetEntries() == 0 || exact.Bytes == nil || exact.GetBytes() == 0 {
		t.Errorf("exact cache = %v, want a memory cache holding the answer just stored", exact)
	}

	uncached, err := dial(t, live.APIKey).ListModels(callContext(t))
	if err != nil {
		t.Fatalf("ListModels without a cache: %v", err)
	}
	if len(uncached.GetCaches()) != 0 {
		t.Errorf("a gateway without a cache lists %v", uncached.GetCaches())
	}
}

func TestInvalidateCacheRefused(t *testing.T) {
	for _, tc := range []struct {
		name, target, key, namespace string
		tags                         []string
		code                         codes.Code
		reason, field                string
	}{
		{"NotAdmin", live.CacheTarget, live.APIKey, "", []string{"doc"}, codes.PermissionDenied, "ADMIN_REQUIRED", ""},
		{"NoCache", live.Target, live.AdminKey, "", []string{"doc"}, codes.FailedPrecondition, "CACHE_DISABLED", ""},
		{"NothingNamed", live.CacheTarget, live.AdminKey, "", nil, codes.InvalidArgument, "", "tags"},
		{"EmptyTag", live.CacheTarget, live.AdminKey, "ns", []string{"doc", ""}, codes.InvalidArgument, "", "tags[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := dialTarget(t, tc.target, tc.key)
			removed, err := client.InvalidateCache(callContext(t), tc.namespace, tc.tags)
			d := switchboard.ErrorDetails(err)
			if d.Code != tc.code {
				t.Fatalf("code = %v (%v, removed %d), want %v", d.Code, err, removed, tc.code)
			}
			if tc.reason != "" && d.Reason() != tc.reason {
				t.Errorf("reason = %q, want %q", d.Reason(), tc.reason)
			}
			if tc.field != "" {
				var fields []string
				for _, v := range d.BadRequest.GetFieldViolations() {
					fields = append(fields, v.GetField())
				}
				if !slices.Equal(fields, []string{tc.field}) {
					t.Errorf("field violations = %v, want %s alone", fields, tc.field)
				}
			}
		})
	}
}

package switchboard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"switchboard.dev/clients/go/switchboard"
)

// liveServer is what clients/testdata/live_server.py prints once it serves.
type liveServer struct {
	Target     string `json:"target"`
	APIKey     string `json:"api_key"`
	LimitedKey string `json:"limited_key"`
	LimitedRPM int    `json:"limited_rpm"`
	SlowMS     int    `json:"slow_ms"`
	Models     struct {
		Chat string `json:"chat"`
		Slow string `json:"slow"`
		// Tokens paced apart: a stream of many deltas.
		Stream string `json:"stream"`
		Alias  string `json:"alias"`
	} `json:"models"`
	// CacheTarget is the same gateway with a response cache; Target has none.
	CacheTarget string `json:"cache_target"`
	// AdminKey may call InvalidateCache, on either gateway.
	AdminKey string `json:"admin_key"`
}

const (
	// The script allows each of its three processes a minute to start.
	startTimeout = 210 * time.Second
	// It then gives each 30 s to stop after SIGTERM.
	stopTimeout = 105 * time.Second
	// Every call in these tests is bounded by this, so a hung gateway fails
	// one test rather than stalling the run until go test's own timeout.
	callTimeout = 30 * time.Second
	// Tests that compile (the example, the protoc plugins) may find the
	// build cache cold on a fresh machine.
	buildTimeout = 3 * time.Minute
)

var (
	live liveServer
	// The module root (clients/go); tests run in the package's directory.
	moduleRoot = ".."
	repoRoot   = filepath.Join("..", "..", "..")
)

// TestMain starts one live server for the whole package: the gateway takes
// seconds to boot, and the limited key's one call a window is shared state.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	python := os.Getenv("SWITCHBOARD_PYTHON")
	if python == "" {
		python = filepath.Join(repoRoot, ".venv", "bin", "python")
	}
	cmd := exec.Command(python, filepath.Join(repoRoot, "clients", "testdata", "live_server.py"))
	// Its logs are shown only when something failed, next to the failure.
	logs := &syncBuffer{}
	cmd.Stderr = logs
	// The script stops when this pipe closes, which also happens if this
	// process dies before it can close it.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "live server:", err)
		return 1
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, "live server:", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "live server:", err)
		return 1
	}
	code := 1
	defer func() {
		_ = stdin.Close()
		stopped := make(chan error, 1)
		go func() { stopped <- cmd.Wait() }()
		select {
		case err := <-stopped:
			if err != nil {
				fmt.Fprintln(os.Stderr, "live server exited:", err)
			}
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			fmt.Fprintln(os.Stderr, "live server did not stop; killed")
		}
		if code != 0 {
			fmt.Fprintf(os.Stderr, "--- live server output:\n%s", logs.String())
		}
	}()

	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(line, &live)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			fmt.Fprintln(os.Stderr, "live server did not start:", err)
			return code
		}
	case <-time.After(startTimeout):
		fmt.Fprintln(os.Stderr, "live server did not start within", startTimeout)
		return code
	}
	code = m.Run()
	return code
}

// syncBuffer is a bytes.Buffer that exec's copying goroutine and the test
// may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// dial connects to the live server with key (none when empty), closing the
// client when the test ends.
func dial(t *testing.T, key string) *switchboard.Client {
	t.Helper()
	return dialTarget(t, live.Target, key)
}

// dialTarget is dial to one of the live server's gateways.
func dialTarget(t *testing.T, target, key string) *switchboard.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	opts := []switchboard.Option{switchboard.WithInsecure()}
	if key != "" {
		opts = append(opts, switchboard.WithAPIKey(key))
	}
	client, err := switchboard.Dial(ctx, target, opts...)
	if err != nil {
		t.Fatalf("Dial(%s): %v", target, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// callContext bounds one test's calls.
func callContext(t *testing.T) context.Context {
	t.Helper()
	return contextFor(t, callTimeout)
}

func contextFor(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// Open-loop load on switchboard.v1.Gateway (Complete or StreamComplete) for one step.
//
// The two scenarios of scenarios.js: `connect` gives each virtual user its own
// gRPC connection, then `measure` offers the step's rate. Only `measure` is counted:
// its first iteration logs BENCH_MEASURE_START so the harness can time its CPU
// window, and the summary goes to the JSON file SUMMARY.
//
// Unary latency is k6's grpc_req_duration (taken inside the gRPC client);
// stream latency and time to first chunk are read from the run's clock
// (exec.instance.currentTestRunDuration: microseconds, where Date.now() has
// only milliseconds).
import exec from 'k6/execution';
import grpc from 'k6/net/grpc';
import { Counter, Trend } from 'k6/metrics';
import { SCENARIOS, SUMMARY_TREND_STATS, TIMEOUT } from './scenarios.js';

const TARGET = __ENV.TARGET;
const METHOD = __ENV.METHOD || 'Complete';

const client = new grpc.Client();
client.load([__ENV.PROTO_ROOT], 'switchboard/v1/gateway.proto');

const ok = new Counter('bench_ok');
const bad = new Counter('bench_bad');
const streamLatency = new Trend('bench_latency', true);
const ttfc = new Trend('bench_ttfc', true);

const REQUEST = {
  model: 'chat',
  messages: [{ role: 'ROLE_USER', content: 'Say hi' }],
  max_tokens: 32,
};

export const options = {
  summaryTrendStats: SUMMARY_TREND_STATS,
  // A threshold that always holds, so the summary has the measure scenario's own figures.
  thresholds: { 'grpc_req_duration{scenario:measure}': ['max>=0'] },
  scenarios: SCENARIOS,
};

let connected = false;

export function connect() {
  client.connect(TARGET, { plaintext: true, timeout: '10s' });
  connected = true;
}

// Turning every answer into JSON costs k6 more CPU than some systems spend on
// the call, on the cores they share, and costs more for a larger answer: every
// call's status is checked, and one call in CHECK_EVERY has its answer decoded
// and checked too.
const CHECK_EVERY = 16;

function unary() {
  const check = exec.scenario.iterationInTest % CHECK_EVERY === 0;
  const res = client.invoke('switchboard.v1.Gateway/Complete', REQUEST, {
    timeout: TIMEOUT,
    discardResponseMessage: !check,
  });
  const answered = !check || (res && res.message && res.message.message);
  if (res && res.status === grpc.StatusOK && answered) {
    ok.add(1);
  } else {
    bad.add(1);
  }
}

function stream() {
  const start = exec.instance.currentTestRunDuration;
  let first = -1;
  let final = false;
  let done = false;
  const s = new grpc.Stream(client, 'switchboard.v1.Gateway/StreamComplete', {
    timeout: TIMEOUT,
  });
  s.on('data', (event) => {
    if (first < 0) {
      first = exec.instance.currentTestRunDuration;
    }
    if (event.final) {
      final = true;
    }
  });
  s.on('error', () => {
    if (!done) {
      done = true;
      bad.add(1);
    }
  });
  s.on('end', () => {
    if (done) {
      return;
    }
    done = true;
    if (final) {
      ok.add(1);
      ttfc.add(first - start);
      streamLatency.add(exec.instance.currentTestRunDuration - start);
    } else {
      bad.add(1);
    }
  });
  s.write(REQUEST);
  s.end();
}

export function measure() {
  if (exec.scenario.iterationInTest === 0) {
    console.log('BENCH_MEASURE_START');
  }
  if (!connected) {
    connect();
  }
  if (METHOD === 'StreamComplete') {
    stream();
  } else {
    unary();
  }
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY]: JSON.stringify(data) };
}

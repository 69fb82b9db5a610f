// Open-loop load on switchboard.v1.Gateway (Complete or StreamComplete) for one step.
//
// Two scenarios: `connect` gives each of the VUS virtual users its own gRPC
// connection (one per VU, kept for the whole run; k6 hands the same VUs to the
// next scenario because the two never overlap), then `measure` offers RATE
// calls a second for DURATION_S seconds whatever the answers' latency
// (constant-arrival-rate: late answers do not slow the offered load, they
// become dropped iterations when every VU is busy). Only `measure` is counted:
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

const TARGET = __ENV.TARGET;
const METHOD = __ENV.METHOD || 'Complete';
const RATE = Number(__ENV.RATE);
const DURATION_S = Number(__ENV.DURATION_S);
const VUS = Number(__ENV.VUS || 256);
const CONNECT_S = Number(__ENV.CONNECT_S || 2);
const TIMEOUT = __ENV.TIMEOUT || '5s';

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
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'],
  // A threshold that always holds, so the summary has the measure scenario's own figures.
  thresholds: { 'grpc_req_duration{scenario:measure}': ['max>=0'] },
  scenarios: {
    connect: {
      executor: 'per-vu-iterations',
      exec: 'connect',
      vus: VUS,
      iterations: 1,
      maxDuration: `${CONNECT_S}s`,
      gracefulStop: '0s',
    },
    measure: {
      executor: 'constant-arrival-rate',
      exec: 'measure',
      // k6 takes whole numbers of iterations per timeUnit: 6.3/s is 6300 per 1000 s,
      // started at even intervals all the same.
      rate: Math.round(RATE * 1000),
      timeUnit: '1000s',
      duration: `${DURATION_S}s`,
      preAllocatedVUs: VUS,
      maxVUs: VUS,
      startTime: `${CONNECT_S}s`,
      gracefulStop: '5s',
    },
  },
};

let connected = false;

export function connect() {
  client.connect(TARGET, { plaintext: true, timeout: '10s' });
  connected = true;
}

function unary() {
  const res = client.invoke('switchboard.v1.Gateway/Complete', REQUEST, { timeout: TIMEOUT });
  if (res && res.status === grpc.StatusOK && res.message && res.message.message) {
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

// Open-loop load on an OpenAI-compatible POST /v1/chat/completions for one step.
//
// The two scenarios of scenarios.js: `connect` opens one keep-alive HTTP/1.1
// connection per VU with a cheap GET (k6 gives every VU its own connection
// pool), then `measure` offers RATE calls a second for DURATION_S seconds.
// STREAM=1 asks for SSE with the usage chunk; the time to first chunk is the
// response's time to first byte (res.timings.waiting), since the upstream and
// the proxies send the headers with the first chunk.
import exec from 'k6/execution';
import http from 'k6/http';
import { Counter, Trend } from 'k6/metrics';
import { SCENARIOS, SUMMARY_TREND_STATS, TIMEOUT } from './scenarios.js';

const TARGET = __ENV.TARGET;
const CONNECT_URL = __ENV.CONNECT_URL;
const STREAM = __ENV.STREAM === '1';

const ok = new Counter('bench_ok');
const bad = new Counter('bench_bad');
const latency = new Trend('bench_latency', true);
const ttfc = new Trend('bench_ttfc', true);

const request = {
  model: __ENV.MODEL || 'chat',
  messages: [{ role: 'user', content: 'Say hi' }],
  max_tokens: 32,
};
if (STREAM) {
  request.stream = true;
  request.stream_options = { include_usage: true };
}
const BODY = JSON.stringify(request);
const PARAMS = {
  headers: { 'Content-Type': 'application/json', Authorization: 'Bearer bench' },
  timeout: TIMEOUT,
  responseType: 'text',
};

export const options = {
  summaryTrendStats: SUMMARY_TREND_STATS,
  scenarios: SCENARIOS,
};

export function connect() {
  http.get(CONNECT_URL, { timeout: '10s', responseType: 'none' });
}

export function measure() {
  if (exec.scenario.iterationInTest === 0) {
    console.log('BENCH_MEASURE_START');
  }
  const res = http.post(TARGET, BODY, PARAMS);
  const good =
    res.status === 200 && res.body !== null && (STREAM ? res.body.includes('[DONE]') : res.body.length > 0);
  if (good) {
    ok.add(1);
    latency.add(res.timings.duration);
    if (STREAM) {
      ttfc.add(res.timings.waiting);
    }
  } else {
    bad.add(1);
  }
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY]: JSON.stringify(data) };
}

// The two scenarios every step runs, shared by grpc.js and http.js.
//
// `connect` gives each of the VUS virtual users its own connection (one per
// VU, kept for the whole run; k6 hands the same VUs to the next scenario
// because the two never overlap), then `measure` offers RATE calls a second
// for DURATION_S seconds whatever the answers' latency (constant-arrival-rate:
// late answers do not slow the offered load, they become dropped iterations
// when every VU is busy).

export const RATE = Number(__ENV.RATE);
export const DURATION_S = Number(__ENV.DURATION_S);
export const VUS = Number(__ENV.VUS || 256);
export const CONNECT_S = Number(__ENV.CONNECT_S || 2);
export const TIMEOUT = __ENV.TIMEOUT || '5s';
export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'count'];

export const SCENARIOS = {
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
};

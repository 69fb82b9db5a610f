/**
 * The shared live gateways (clients/testdata/live_server.py): one per test
 * run, because it starts three processes and the suite's calls are cheap.
 *
 * It is stopped with SIGTERM, on which it stops its own children. Closing
 * its stdin is not enough from Node: the script watches stdin only when it is
 * a FIFO, and Node hands a child a socket, not a FIFO.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** This file runs from clients/node/dist/test/. */
export const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
export const PACKAGE_ROOT = fileURLToPath(new URL("../../", import.meta.url));

// The script allows 60 s for each of its three processes to come up, then 30 s each to stop.
const START_TIMEOUT_MS = 210_000;
const STOP_TIMEOUT_MS = 100_000;
const STDERR_KEPT = 64 * 1024;

export interface LiveServer {
  target: string;
  /** The same gateway with a response cache; `target` has none. */
  cacheTarget: string;
  apiKey: string;
  limitedKey: string;
  /** May call InvalidateCache, on either gateway. */
  adminKey: string;
  limitedRpm: number;
  slowMs: number;
  models: { chat: string; slow: string; stream: string; alias: string };
  stop(): Promise<void>;
}

interface Facts {
  target: string;
  cache_target: string;
  api_key: string;
  limited_key: string;
  admin_key: string;
  limited_rpm: number;
  slow_ms: number;
  models: { chat: string; slow: string; stream: string; alias: string };
}

export async function startLiveServer(): Promise<LiveServer> {
  const python = process.env.SWITCHBOARD_PYTHON ?? join(REPO_ROOT, ".venv", "bin", "python");
  const child = spawn(python, [join(REPO_ROOT, "clients", "testdata", "live_server.py")], {
    cwd: REPO_ROOT,
    stdio: ["pipe", "pipe", "pipe"],
  });
  // Kept for a failure's message only; drained so the server never blocks on a full pipe.
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_KEPT);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  // A runner that exits without calling stop() (a crash, process.exit) still stops it.
  const terminate = (): void => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
    }
  };
  process.once("exit", terminate);

  let facts: Facts;
  try {
    facts = await firstLine(child, () => stderr);
  } catch (err) {
    process.off("exit", terminate);
    terminate(); // the script stops whichever of its children did start
    throw err;
  }
  return {
    target: facts.target,
    cacheTarget: facts.cache_target,
    apiKey: facts.api_key,
    limitedKey: facts.limited_key,
    adminKey: facts.admin_key,
    limitedRpm: facts.limited_rpm,
    slowMs: facts.slow_ms,
    models: facts.models,
    async stop(): Promise<void> {
      process.off("exit", terminate);
      child.stdin.end();
      terminate();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), STOP_TIMEOUT_MS);
      });
      if ((await Promise.race([exited, late])) === "late") {
        child.kill("SIGKILL"); // its children may outlive it: say so in the failure
        throw new Error(`live server: still running ${STOP_TIMEOUT_MS} ms after SIGTERM`);
      }
      clearTimeout(timer);
    },
  };
}

function firstLine(child: ChildProcessWithoutNullStreams, stderr: () => string): Promise<Facts> {
  return new Promise((resolve, reject) => {
    let buffered = "";
    const fail = (why: string): void => {
      cleanup();
      reject(new Error(`live server: ${why}\n${stderr()}`));
    };
    const onData = (chunk: string): void => {
      buffered += chunk;
      const newline = buffered.indexOf("\n");
      if (newline < 0) {
        return;
      }
      cleanup();
      try {
        resolve(JSON.parse(buffered.slice(0, newline)) as Facts);
      } catch (err) {
        reject(new Error(`live server: not JSON: ${buffered.slice(0, newline)} (${String(err)})`));
      }
    };
    const onExit = (code: number | null): void => fail(`exited with ${code} before it was ready`);
    const onError = (err: Error): void => fail(`could not start: ${err.message}`);
    const timer = setTimeout(() => fail(`not ready after ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout.off("data", onData);
      child.stdout.resume(); // anything it prints later is not ours to read
      child.off("exit", onExit);
      child.off("error", onError);
    };
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", onData);
    child.once("exit", onExit);
    child.once("error", onError);
  });
}

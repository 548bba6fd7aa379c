/**
 * Measures one agent executable between check-ins: it is enrolled against a
 * local server, runs at a short interval, and is read from
 * /proc/<pid>/status (RSS, split into anonymous and file-backed pages),
 * /proc/<pid>/stat and every thread's schedstat (CPU time, times scheduled)
 * at each acknowledged check-in and at a quarter and three quarters of each
 * interval, so the middle half of every interval is a window with no
 * check-in in it.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { resolveServerConfig } from '../server/config.js';
import { AGENT_SERVICE_ENV } from '../server/installer/linux-installer.js';
import { buildServer } from '../server/server.js';

const run = promisify(execFile);

/** One reading of a process. */
export interface ProcSample {
  readonly at: number;
  readonly rssBytes: number;
  readonly anonBytes: number;
  readonly fileBytes: number;
  readonly hwmBytes: number;
  /** Sum over threads of time on a CPU (schedstat), nanoseconds. */
  readonly runNs: number;
  /** Sum over threads of times put on a CPU (schedstat): wake-ups, roughly. */
  readonly slices: number;
  readonly threads: number;
}

/** One measured check-in interval. */
export interface IntervalSample {
  /** At a quarter and three quarters of the interval. */
  readonly early: ProcSample;
  readonly late: ProcSample;
  /** At the check-in that ends the interval. */
  readonly end: ProcSample;
}

/** What the measurement found. */
export interface AgentMeasurement {
  readonly intervalSec: number;
  readonly start: ProcSample;
  readonly intervals: readonly IntervalSample[];
}

/** Reads one sample of a process from /proc. */
export async function sampleProc(pid: number): Promise<ProcSample> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  let runNs = 0;
  let slices = 0;
  const tasks = await fs.readdir(`/proc/${pid}/task`);
  for (const t of tasks) {
    const parts = (await fs.readFile(`/proc/${pid}/task/${t}/schedstat`, 'utf8').catch(() => '0 0 0')).trim().split(' ');
    runNs += Number(parts[0]);
    slices += Number(parts[2]);
  }
  return { at: Date.now(), rssBytes: kb('VmRSS'), anonBytes: kb('RssAnon'), fileBytes: kb('RssFile'), hwmBytes: kb('VmHWM'), runNs, slices, threads: tasks.length };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Starts `binary run` (already enrolled in `stateDir`) and waits for its first welcome. */
function startAgentProcess(binary: string, stateDir: string, env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(binary, ['run', '--state-dir', stateDir, '--log-level', 'warn'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
}

/** Enrolls `binary` against a fresh local server and samples it through `checkins` intervals after `warmup` check-ins. */
export async function measureAgent(opts: { binary: string; intervalSec: number; checkins: number; warmup: number; onProgress: (m: string) => void }): Promise<AgentMeasurement> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rollcall-bench-agent-'));
  const acked: number[] = [];
  let wake: (() => void) | undefined;
  const config = resolveServerConfig({ dataDir: path.join(dir, 'data'), listenHost: '127.0.0.1', agentPort: 0, consolePort: 0, checkinIntervalSec: opts.intervalSec });
  const server = await buildServer(config, {
    log: pino({ level: 'warn' }),
    onEvent: (e) => {
      if (e.kind !== 'checkin') return;
      acked.push(e.at);
      wake?.();
    },
  });
  await server.start();
  let child: ChildProcess | undefined;
  try {
    const group = await server.storage.groups.ensurePath('Bench/Agent');
    const { secret } = await server.storage.enrollTokens.create({ groupId: group.id, expiresAt: null, maxUses: 1, now: Date.now() });
    const stateDir = path.join(dir, 'state');
    // As the installed service runs it: the unit's environment, and no node on the PATH.
    const env = { PATH: '/nonexistent', HOME: dir, ROLLCALL_AGENT_TOKEN: secret, ...AGENT_SERVICE_ENV };
    await run(opts.binary, ['enroll', '--server', `127.0.0.1:${server.agentPort}`, '--ca-pin', server.pki.caPin, '--state-dir', stateDir], { env });
    child = startAgentProcess(opts.binary, stateDir, env);
    const pid = child.pid!;
    const waitCheckins = async (n: number): Promise<void> => {
      const deadline = Date.now() + (n + 2) * opts.intervalSec * 1000 + 30_000;
      while (acked.length < n) {
        if (Date.now() > deadline) throw new Error(`the agent made ${acked.length} of ${n} check-ins before the deadline`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 1000);
        });
      }
    };
    opts.onProgress(`agent pid ${pid} at a ${opts.intervalSec} s interval; ${opts.warmup} check-ins of warm-up`);
    await waitCheckins(opts.warmup);
    const start = await sampleProc(pid);
    const intervals: IntervalSample[] = [];
    const ms = opts.intervalSec * 1000;
    for (let i = 1; i <= opts.checkins; i += 1) {
      const from = acked[acked.length - 1]!;
      await sleep(Math.max(0, from + ms / 4 - Date.now()));
      const early = await sampleProc(pid);
      await sleep(Math.max(0, from + (ms * 3) / 4 - Date.now()));
      const late = await sampleProc(pid);
      await waitCheckins(opts.warmup + i);
      const end = await sampleProc(pid);
      intervals.push({ early, late, end });
      opts.onProgress(`interval ${i} of ${opts.checkins}: RSS ${(late.rssBytes / 2 ** 20).toFixed(1)} MiB (${(late.anonBytes / 2 ** 20).toFixed(1)} MiB anonymous)`);
    }
    return { intervalSec: opts.intervalSec, start, intervals };
  } finally {
    child?.kill('SIGTERM');
    await server.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Starts an executable that does nothing but wait, and reads it once it settled: the floor of any Node single executable. */
export async function measureIdleExecutable(binary: string, settleMs: number): Promise<ProcSample> {
  const child = spawn(binary, [], { stdio: 'ignore', env: { PATH: '/nonexistent' } });
  try {
    await sleep(settleMs);
    return await sampleProc(child.pid!);
  } finally {
    child.kill('SIGTERM');
  }
}

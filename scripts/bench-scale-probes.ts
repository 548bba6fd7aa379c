/**
 * The instruments of `bench scale` (scripts/bench-scale.ts): load-generator
 * counters summed and differenced, a background console API prober, and the
 * once-a-second timeline of connected agents and server RSS.
 */
import https from 'node:https';
import { percentile } from './bench-measure.js';
import type { TimelinePoint } from './bench-scale-report.js';
import type { ConsoleAccess, TargetHandle } from './bench-target-process.js';
import { emptyStats, type LoadgenStats } from './loadgen.js';
import type { LoadgenHandle } from './loadgen-process.js';

export function sumStats(all: readonly LoadgenStats[]): LoadgenStats {
  const total = emptyStats();
  for (const s of all) for (const k of Object.keys(total) as (keyof LoadgenStats)[]) total[k] += s[k];
  return total;
}

export function diffStats(a: LoadgenStats, b: LoadgenStats): LoadgenStats {
  const d = { ...b };
  for (const k of Object.keys(d) as (keyof LoadgenStats)[]) if (k !== 'connected') d[k] = b[k] - a[k];
  return d;
}

/** Console API calls in the background (ours only): latency of each, failures counted. */
export class ConsoleProbe {
  private readonly latencies: number[] = [];
  private failures = 0;
  private running = false;
  private loop: Promise<void> | undefined;
  private agent = new https.Agent({ keepAlive: true, maxSockets: 1 });

  constructor(
    private access: ConsoleAccess,
    private readonly caPem: string,
    private readonly deviceIds: readonly string[],
    private readonly everyMs = 200,
  ) {}

  retarget(access: ConsoleAccess): void {
    this.access = access;
    this.agent.destroy();
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  }

  private once(): Promise<void> {
    const id = this.deviceIds[Math.floor(Math.random() * this.deviceIds.length)]!;
    const t0 = process.hrtime.bigint();
    return new Promise<void>((resolve) => {
      const req = https.request(
        {
          host: '127.0.0.1',
          port: this.access.port,
          path: `/api/v1/devices/${id}`,
          ca: this.caPem,
          agent: this.agent,
          headers: { authorization: `Bearer ${this.access.adminToken}` },
          timeout: 10_000,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) this.latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
            else this.failures += 1;
            resolve();
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => {
        this.failures += 1;
        resolve();
      });
      req.end();
    });
  }

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        const started = Date.now();
        await this.once();
        await new Promise((r) => setTimeout(r, Math.max(0, this.everyMs - (Date.now() - started))));
      }
    })();
  }

  /** Stops and returns what was measured since the last take. */
  async take(): Promise<{ calls: number; failures: number; p99Ms: number; maxMs: number }> {
    this.running = false;
    await this.loop;
    const sorted = Float64Array.from(this.latencies).sort();
    const out = { calls: sorted.length + this.failures, failures: this.failures, p99Ms: percentile(sorted, 99), maxMs: sorted[sorted.length - 1] ?? NaN };
    this.latencies.length = 0;
    this.failures = 0;
    return out;
  }

  close(): void {
    this.running = false;
    this.agent.destroy();
  }
}

/** Polls the load generators' connected count (and the server's RSS) once a second. */
export class Timeline {
  readonly points: TimelinePoint[] = [];
  private timer: NodeJS.Timeout | undefined;
  peakRssBytes = 0;
  private busy = false;
  connected = 0;

  constructor(
    private readonly loadgens: readonly LoadgenHandle[],
    private readonly t0: number,
  ) {}

  start(phase: TimelinePoint['phase'], target: () => TargetHandle | undefined): void {
    this.stop();
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.busy = true;
      const t = target();
      void Promise.all([Promise.all(this.loadgens.map((l) => l.stats())), t ? t.sample('quick').catch(() => undefined) : Promise.resolve(undefined)])
        .then(([stats, sample]) => {
          this.connected = sumStats(stats).connected;
          if (sample) this.peakRssBytes = Math.max(this.peakRssBytes, sample.rssBytes);
          this.points.push({ tMs: Date.now() - this.t0, phase, connected: this.connected, serverRssBytes: sample?.rssBytes });
        })
        .catch(() => undefined)
        .finally(() => {
          this.busy = false;
        });
    }, 1000);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

export async function waitUntil(check: () => Promise<boolean>, deadlineMs: number, what: string): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

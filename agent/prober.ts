/**
 * The agent as an outside-in probe: it checks every port the server
 * advertises, on every host of its server list, from the customer's
 * network, and reports what it saw. It probes when a channel comes up after
 * any failure, and otherwise every `intervalMs` while connected. Probes run
 * in the background, one round at a time, and never delay check-ins.
 */
import type { Logger } from 'pino';
import type { ListenerPort, ProbeResult } from '../common/protocol.js';

/** Checks the given ports of one host. */
export type ProbeFn = (host: string, ports: readonly ListenerPort[]) => Promise<ProbeResult[]>;

/** Where the results go. */
export interface ProbeSink {
  setProbes(results: readonly ProbeResult[]): void;
}

/** Schedules probe rounds. */
export class ProbeScheduler {
  private lastRoundAt = -Infinity;
  private failureSinceRound = true;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly probe: ProbeFn,
    private readonly sink: ProbeSink,
    private readonly intervalMs: number,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** A connection attempt failed: probe as soon as a channel works again. */
  noteFailure(): void {
    this.failureSinceRound = true;
  }

  /** A channel came up: probe now if due, and keep probing at the interval while it lasts. */
  onConnected(hosts: readonly string[], ports: readonly ListenerPort[]): void {
    if (this.stopped || ports.length === 0 || hosts.length === 0) return;
    const due = this.failureSinceRound || this.now() - this.lastRoundAt >= this.intervalMs;
    if (due) this.round(hosts, ports);
    this.arm(hosts, ports);
  }

  /** The channel went down: stop the periodic timer. */
  onDisconnected(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Stops everything; resolves when a running round has ended. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.onDisconnected();
    await this.running;
  }

  private arm(hosts: readonly string[], ports: readonly ListenerPort[]): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.round(hosts, ports);
      this.arm(hosts, ports);
    }, this.intervalMs);
    this.timer.unref();
  }

  private round(hosts: readonly string[], ports: readonly ListenerPort[]): void {
    if (this.running || this.stopped) return;
    this.failureSinceRound = false;
    this.lastRoundAt = this.now();
    this.running = (async () => {
      const results: ProbeResult[] = [];
      for (const host of new Set(hosts)) {
        try {
          results.push(...(await this.probe(host, ports)));
        } catch (err) {
          this.log.warn({ host, err: (err as Error).message }, 'port probe failed to run');
        }
      }
      if (!this.stopped) this.sink.setProbes(results);
      const failing = results.filter((r) => !r.ok);
      this.log.info({ probed: results.length, failing: failing.map((r) => `${r.host}:${r.port} ${r.failure ?? ''}`) }, 'port probe round done');
    })().finally(() => {
      this.running = null;
    });
  }
}

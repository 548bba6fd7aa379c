/**
 * Check-in records while the agent has no live channel (issue 5): at the
 * cadence it would have checked in (the interval the server last gave,
 * else the default), at most one per interval, a `checkin` event goes into
 * the outbox, so the server learns afterwards that the device was alive
 * and could not reach it. While connected the live `checkin` messages do
 * that job and nothing is recorded here.
 */
import os from 'node:os';

/** Where the records go: the outbox feed (logs, never throws). */
export interface CheckinSink {
  add(kind: 'checkin', data: { uptimeSec: number; reason?: string }): Promise<number | null>;
}

/** Options of {@link OfflineCheckins}. */
export interface OfflineCheckinOptions {
  /** The interval before the server gave one (the agent's default). */
  readonly defaultIntervalSec: number;
  /** Set by `--interval`: used instead of anything the server says. */
  readonly intervalOverrideSec?: number;
  /** The uptime recorded (default: the machine's, rounded, as in live check-ins). */
  readonly uptimeSec?: () => number;
}

/** Records a `checkin` event per interval while offline. */
export class OfflineCheckins {
  private serverIntervalSec: number | null = null;
  private reason: string | undefined;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly sink: CheckinSink,
    private readonly opts: OfflineCheckinOptions,
  ) {}

  /** The interval the records are spaced by, in seconds. */
  get intervalSec(): number {
    return this.opts.intervalOverrideSec ?? this.serverIntervalSec ?? this.opts.defaultIntervalSec;
  }

  /** The server gave (or changed) the check-in interval. */
  setServerInterval(sec: number): void {
    this.serverIntervalSec = sec;
  }

  /** A live channel is up: live check-ins take over, nothing is recorded. */
  online(): void {
    this.reason = undefined;
    this.clear();
  }

  /**
   * No live channel (starting, connecting, backing off). `reason` is the
   * failure class of the last attempt, when known. The first record comes
   * one interval after the agent went offline; a second call while offline
   * only updates the reason (the cadence is kept).
   */
  offline(reason?: string): void {
    if (reason !== undefined) this.reason = reason;
    if (this.stopped || this.timer) return;
    this.schedule();
  }

  /** Stops for good. */
  stop(): void {
    this.stopped = true;
    this.clear();
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.stopped) return;
      const uptimeSec = this.opts.uptimeSec ? this.opts.uptimeSec() : Math.round(os.uptime());
      void this.sink.add('checkin', this.reason === undefined ? { uptimeSec } : { uptimeSec, reason: this.reason });
      this.schedule();
    }, this.intervalSec * 1000);
    this.timer.unref();
  }

  private clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

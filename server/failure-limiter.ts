/** What a route that limits failed attempts per key (a source address) needs. */
export interface FailureLimits {
  /** Milliseconds until `key` may try again; 0 when it is not blocked. */
  blockedFor(key: string, now: number): number;
  /** Records one failure for `key`. */
  fail(key: string, now: number): void;
}

/**
 * Counts failures per key (a source address) in fixed windows and blocks a
 * key that has too many, until its window ends. Used for enrollment
 * attempts. Memory is bounded: expired entries are dropped as we go.
 */
export class FailureLimiter implements FailureLimits {
  private readonly entries = new Map<string, { count: number; windowStart: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly maxKeys = 100_000,
  ) {}

  /** Milliseconds until `key` may try again; 0 when it is not blocked. */
  blockedFor(key: string, now: number): number {
    const e = this.entries.get(key);
    if (!e) return 0;
    if (now - e.windowStart >= this.windowMs) {
      this.entries.delete(key);
      return 0;
    }
    return e.count >= this.limit ? e.windowStart + this.windowMs - now : 0;
  }

  /** Records one failure for `key`. */
  fail(key: string, now: number): void {
    const e = this.entries.get(key);
    if (!e || now - e.windowStart >= this.windowMs) {
      if (this.entries.size >= this.maxKeys) this.prune(now);
      this.entries.set(key, { count: 1, windowStart: now });
    } else {
      e.count += 1;
    }
  }

  /** Every key blocked at `now`, with the moment (epoch ms) it may try again. */
  *blocked(now: number): Iterable<{ readonly key: string; readonly until: number }> {
    for (const [key, e] of this.entries) {
      if (e.count >= this.limit && now - e.windowStart < this.windowMs) yield { key, until: e.windowStart + this.windowMs };
    }
  }

  private prune(now: number): void {
    for (const [k, e] of this.entries) if (now - e.windowStart >= this.windowMs) this.entries.delete(k);
    if (this.entries.size >= this.maxKeys) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }
}

/**
 * An agent worker's side of the box's one limiter: a failure is reported to
 * the primary, which counts them for all workers (the kernel spreads one
 * address's connections over every worker, so counting per worker would
 * allow N times the limit) and tells every worker which keys are blocked
 * until when; the check itself stays local and costs no IPC.
 */
export class RelayedFailureLimits implements FailureLimits {
  private readonly blocked = new Map<string, number>();

  constructor(
    private readonly report: (key: string) => void,
    private readonly maxKeys = 100_000,
  ) {}

  blockedFor(key: string, now: number): number {
    const until = this.blocked.get(key);
    if (until === undefined) return 0;
    if (now >= until) {
      this.blocked.delete(key);
      return 0;
    }
    return until - now;
  }

  fail(key: string): void {
    this.report(key);
  }

  /** The primary says `key` is blocked until `until` (epoch milliseconds). */
  block(key: string, until: number, now: number): void {
    if (this.blocked.size >= this.maxKeys) {
      for (const [k, u] of this.blocked) if (now >= u) this.blocked.delete(k);
      if (this.blocked.size >= this.maxKeys) {
        const oldest = this.blocked.keys().next().value;
        if (oldest !== undefined) this.blocked.delete(oldest);
      }
    }
    this.blocked.set(key, until);
  }
}

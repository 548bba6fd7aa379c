/**
 * Counts failures per key (a source address) in fixed windows and blocks a
 * key that has too many, until its window ends. Used for enrollment
 * attempts. Memory is bounded: expired entries are dropped as we go.
 */
export class FailureLimiter {
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

  private prune(now: number): void {
    for (const [k, e] of this.entries) if (now - e.windowStart >= this.windowMs) this.entries.delete(k);
    if (this.entries.size >= this.maxKeys) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
  }
}

/**
 * Sightings of the console listener: the public address of every request,
 * so the health report can tell when a restricted console port is reached
 * from customers' networks. Cheap on purpose: an address is written at most
 * once per minute, the write is never awaited by the request, and the memory
 * of recent writes is swept so it cannot grow without bound.
 */
import type { Logger } from 'pino';
import type { EvidenceStore } from '../storage/evidence-store.js';

/** Options of {@link ConsoleSightings}. */
export interface ConsoleSightingsOptions {
  readonly evidence: Pick<EvidenceStore, 'recordSighting'>;
  readonly log: Logger;
  readonly now: () => number;
  /** Least time between two writes for one address (default 60 s). */
  readonly everyMs?: number;
  /** Addresses remembered before a sweep (default 10,000). */
  readonly maxRemembered?: number;
}

/** Records console requests' addresses, coalesced in memory. */
export class ConsoleSightings {
  private readonly lastWritten = new Map<string, number>();
  private readonly everyMs: number;
  private readonly maxRemembered: number;

  constructor(private readonly opts: ConsoleSightingsOptions) {
    this.everyMs = opts.everyMs ?? 60_000;
    this.maxRemembered = opts.maxRemembered ?? 10_000;
  }

  /** How many addresses are remembered now. */
  get remembered(): number {
    return this.lastWritten.size;
  }

  /** Notes a request from `address`; writes only when this address was not written within the interval. */
  note(address: string | undefined): void {
    if (!address) return;
    const now = this.opts.now();
    const last = this.lastWritten.get(address);
    if (last !== undefined && now - last < this.everyMs) return;
    if (last === undefined && this.lastWritten.size >= this.maxRemembered) this.sweep(now);
    this.lastWritten.set(address, now);
    this.opts.evidence
      .recordSighting({ role: 'console', address, deviceId: null, groupId: null, at: now })
      .catch((err: unknown) => this.opts.log.error({ err: (err as Error).message }, 'cannot record a console sighting'));
  }

  /** Forgets addresses whose interval has passed (they would be written again anyway). */
  private sweep(now: number): void {
    for (const [address, at] of this.lastWritten) if (now - at >= this.everyMs) this.lastWritten.delete(address);
    // Still full of addresses seen within the minute (a flood): forget the oldest half rather than grow.
    if (this.lastWritten.size >= this.maxRemembered) {
      let drop = Math.ceil(this.lastWritten.size / 2);
      for (const address of this.lastWritten.keys()) {
        if (drop-- <= 0) break;
        this.lastWritten.delete(address);
      }
    }
  }
}

/**
 * The primary's stand-in for a session held by an agent worker: what the
 * global registry, the console, revocation, questions and CA rotation need
 * (device, fingerprint, close, trust), each forwarded to the owning worker.
 * Pings are each worker's own business, so heartbeat() does nothing here.
 */
import type { LiveSession } from '../session-registry.js';

/** How a remote session reaches its worker. */
export interface SessionOwner {
  close(sid: number, code: number, reason: string): void;
  trust(sid: number, cas: string[]): void;
  /** Asks the worker whether the session answered its last ping. */
  probe(sid: number): Promise<boolean>;
}

/** A session living in an agent worker. */
export class RemoteSession implements LiveSession {
  /** As last reported by the worker (refreshed before a replacement decision). */
  alive = true;
  /** Set when the worker reported the channel closed (or the worker died). */
  ended = false;

  constructor(
    readonly deviceId: string,
    readonly fingerprint: string,
    readonly sid: number,
    readonly workerSlot: number,
    private readonly owner: SessionOwner,
  ) {}

  close(code: number, reason: string): void {
    if (!this.ended) this.owner.close(this.sid, code, reason);
  }

  sendTrust(cas: string[]): void {
    if (!this.ended) this.owner.trust(this.sid, cas);
  }

  heartbeat(): void {}

  /** Refreshes `alive` from the worker; a failed probe counts as not alive. */
  async refreshAlive(): Promise<void> {
    if (this.ended) return;
    this.alive = await this.owner.probe(this.sid).catch(() => false);
  }
}

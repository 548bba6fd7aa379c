/**
 * Delivers the outbox over one channel (protocol 3): in sequence order, one
 * `events` frame in flight at a time, at most MAX_EVENTS_PER_FRAME events
 * and about 48 KiB per frame, and frames spaced so that they and the
 * check-ins stay inside the server's per-connection frame budget (5/s).
 * Events leave the outbox only on `events_ack`; a channel that drops with a
 * frame in flight sends it again on the next one (the server dedupes).
 */
import type { Logger } from 'pino';
import { encode, MAX_EVENTS_PER_FRAME, type AgentEvent } from '../common/protocol.js';
import type { OutboxEvent } from './outbox-format.js';

/** What delivery needs from the outbox. */
export interface EventSource {
  peek(after: number, maxCount: number, maxBytes: number): OutboxEvent[];
  ack(seq: number): void;
  rebase(serverSeq: number): Promise<boolean>;
  onChange(fn: () => void): () => void;
}

/** Bytes of events per frame, leaving room below the 64 KiB frame limit. */
const MAX_BATCH_BYTES = 48 * 1024;
/** Least time between two `events` frames: 3.3/s plus check-ins stays under the server's 5 frames/s. */
export const MIN_EVENTS_GAP_MS = 300;

/** One channel's delivery. */
export class EventDelivery {
  private sentUpTo = 0;
  private inflight = false;
  private lastSentAt = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  private stopped = false;

  private ackTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly source: EventSource,
    private readonly send: (frame: string) => boolean,
    private readonly log: Logger,
    /** How long an `events` frame may wait for its ack before the channel counts as broken. */
    private readonly ackTimeoutMs: number,
    private readonly onStall: (message: string) => void,
    private readonly gapMs = MIN_EVENTS_GAP_MS,
  ) {}

  /** Starts after `welcome`: renumbers a lost history above the server's, then sends. */
  async start(serverLastSeq: number): Promise<void> {
    if (await this.source.rebase(serverLastSeq)) {
      this.log.warn({ serverLastSeq }, 'the server holds more events than this outbox ever numbered (its file was lost or damaged); pending events were renumbered');
    }
    if (this.stopped) return;
    this.unsubscribe = this.source.onChange(() => this.pump());
    this.pump();
  }

  /** The server stored events up to `upTo`. */
  acked(upTo: number): void {
    this.log.debug({ upTo, sentUpTo: this.sentUpTo }, 'events acknowledged');
    this.source.ack(upTo);
    if (upTo >= this.sentUpTo) {
      this.inflight = false;
      if (this.ackTimer) clearTimeout(this.ackTimer);
      this.ackTimer = null;
    }
    this.pump();
  }

  /** The channel ended. */
  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.timer) clearTimeout(this.timer);
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.timer = this.ackTimer = null;
  }

  private pump(): void {
    if (this.stopped || this.inflight || this.timer) return;
    const wait = this.lastSentAt + this.gapMs - Date.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.pump();
      }, wait);
      return;
    }
    const events = this.source.peek(this.sentUpTo, MAX_EVENTS_PER_FRAME, MAX_BATCH_BYTES);
    if (events.length === 0) return;
    if (!this.send(encode({ type: 'events', events: events as AgentEvent[] }))) return;
    this.inflight = true;
    this.lastSentAt = Date.now();
    this.sentUpTo = events[events.length - 1]!.seq;
    const upTo = this.sentUpTo;
    this.ackTimer = setTimeout(() => this.onStall(`events up to ${upTo} were not acknowledged within ${this.ackTimeoutMs} ms`), this.ackTimeoutMs);
    this.log.debug({ from: events[0]!.seq, upTo: this.sentUpTo }, 'events sent');
  }
}

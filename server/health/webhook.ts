/**
 * Delivers alert payloads to the configured webhook: POST JSON, one at a
 * time in order, retried with exponential backoff and jitter up to a bounded
 * number of attempts, from a queue bounded in size (the oldest payload is
 * dropped when it overflows). `send` never waits, so nothing on a check-in
 * path can be held up by a slow or hanging receiver; each POST has a
 * deadline. The URL may carry a secret, so logs name only its origin.
 */
import type { Logger } from 'pino';
import { backoffDelay, type BackoffPolicy } from '../../common/backoff.js';

/** Options of {@link WebhookSender}. */
export interface WebhookOptions {
  readonly url: string;
  readonly log: Logger;
  /** Deadline of one POST (default 5 s). */
  readonly timeoutMs?: number;
  /** Attempts per payload, the first included (default 6). */
  readonly maxAttempts?: number;
  /** Retry delays (default 1 s doubling up to 60 s, full jitter). */
  readonly backoff?: BackoffPolicy;
  /** Payloads waiting at most (default 200). */
  readonly maxQueue?: number;
  readonly random?: () => number;
}

/** Counters, for tests and the log. */
export interface WebhookStats {
  delivered: number;
  failed: number;
  dropped: number;
  attempts: number;
}

/** Whether an answer's status is worth another try. */
const retryable = (status: number): boolean => status === 408 || status === 429 || status >= 500;

/** Sends webhook payloads in the background. */
export class WebhookSender {
  private readonly queue: string[] = [];
  private readonly origin: string;
  private running = false;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private wakeSleep: (() => void) | null = null;
  private readonly abort = new AbortController();
  private drained: Promise<void> = Promise.resolve();
  readonly stats: WebhookStats = { delivered: 0, failed: 0, dropped: 0, attempts: 0 };

  constructor(private readonly opts: WebhookOptions) {
    this.origin = new URL(opts.url).origin;
  }

  /** Queues a payload; returns at once. False when the sender is closed. */
  send(payload: unknown): boolean {
    if (this.closed) return false;
    this.queue.push(JSON.stringify(payload));
    if (this.queue.length > (this.opts.maxQueue ?? 200)) {
      this.queue.shift();
      this.stats.dropped += 1;
      this.opts.log.warn({ target: this.origin, queued: this.queue.length }, 'webhook queue full: dropped the oldest alert');
    }
    if (!this.running) {
      this.running = true;
      this.drained = this.drain();
    }
    return true;
  }

  /** Resolves when every queued payload was delivered, given up or dropped. */
  idle(): Promise<void> {
    return this.drained;
  }

  /** Stops: drops what is queued, cancels a waiting retry and aborts a POST in flight. */
  async close(): Promise<void> {
    this.closed = true;
    this.stats.dropped += this.queue.length;
    this.queue.length = 0;
    this.abort.abort();
    if (this.timer) clearTimeout(this.timer);
    this.wakeSleep?.();
    await this.drained;
  }

  private async drain(): Promise<void> {
    try {
      while (!this.closed && this.queue.length > 0) await this.deliver(this.queue.shift()!);
    } finally {
      // In the same turn as the last look at the queue, so that a payload queued next starts a new drain.
      this.running = false;
    }
  }

  private async deliver(body: string): Promise<void> {
    const maxAttempts = this.opts.maxAttempts ?? 6;
    const policy = this.opts.backoff ?? { baseMs: 1000, capMs: 60_000 };
    for (let attempt = 1; attempt <= maxAttempts && !this.closed; attempt += 1) {
      this.stats.attempts += 1;
      const outcome = await this.post(body);
      if (outcome === 'ok') {
        this.stats.delivered += 1;
        return;
      }
      const last = attempt === maxAttempts || !outcome.retry;
      this.opts.log.warn({ target: this.origin, attempt, reason: outcome.reason, willRetry: !last && !this.closed }, 'alert webhook failed');
      if (last) break;
      await this.sleep(backoffDelay(policy, attempt - 1, this.opts.random));
    }
    if (!this.closed) {
      this.stats.failed += 1;
      this.opts.log.error({ target: this.origin, attempts: maxAttempts }, 'alert webhook gave up on an alert');
    }
  }

  private async post(body: string): Promise<'ok' | { retry: boolean; reason: string }> {
    try {
      const res = await fetch(this.opts.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'rollcall-alerts' },
        body,
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.opts.timeoutMs ?? 5000)]),
        redirect: 'error',
      });
      await res.body?.cancel();
      if (res.ok) return 'ok';
      return { retry: retryable(res.status), reason: `HTTP ${res.status}` };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      return { retry: true, reason: e.name === 'TimeoutError' ? 'timed out' : (e.cause?.code ?? e.message) };
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wakeSleep = resolve;
      this.timer = setTimeout(resolve, ms);
      this.timer.unref();
    }).then(() => {
      this.timer = null;
      this.wakeSleep = null;
    });
  }
}

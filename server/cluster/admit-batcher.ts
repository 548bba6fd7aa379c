/**
 * An agent worker's hello admissions on their way to the primary: the
 * hellos of one event-loop turn travel in one `admit` call, and its answer
 * holds one decision per hello, in order. In a reconnect storm the primary
 * then parses one message per batch, not one per connect.
 */
import type { AdmitDecision, HelloFacts } from '../session-admission.js';

/** One hello waiting for its decision. */
export interface AdmitItem {
  readonly sid: number;
  readonly hello: HelloFacts;
}

interface Waiting {
  readonly item: AdmitItem;
  readonly resolve: (d: AdmitDecision) => void;
  readonly reject: (err: unknown) => void;
}

/** Coalesces admissions per event-loop turn. */
export class AdmitBatcher {
  private waiting: Waiting[] = [];
  private scheduled = false;
  /** Batches sent and hellos in them, for tests and measurements. */
  readonly stats = { batches: 0, hellos: 0 };

  constructor(private readonly send: (items: AdmitItem[]) => Promise<readonly AdmitDecision[]>) {}

  /** Resolves with the primary's decision on this hello. */
  admit(item: AdmitItem): Promise<AdmitDecision> {
    return new Promise<AdmitDecision>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.waiting;
    this.waiting = [];
    this.scheduled = false;
    this.stats.batches += 1;
    this.stats.hellos += batch.length;
    this.send(batch.map((w) => w.item)).then(
      (decisions) => {
        if (decisions.length !== batch.length) {
          const err = new Error(`the primary answered ${decisions.length} admissions for ${batch.length} hellos`);
          for (const w of batch) w.reject(err);
          return;
        }
        batch.forEach((w, i) => w.resolve(decisions[i]!));
      },
      (err: unknown) => {
        for (const w of batch) w.reject(err);
      },
    );
  }
}

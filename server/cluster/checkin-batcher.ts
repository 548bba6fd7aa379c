/**
 * An agent worker's check-ins on their way to the primary: those accepted
 * in the same event-loop turn travel in one `checkins` call, so a busy
 * worker pays one IPC message (and the primary one parse) per batch rather
 * than per check-in. Each check-in's promise settles with its batch's
 * answer, which the primary gives once every record in it is durable.
 */
import type { CheckinRecord } from '../checkin-writer.js';

interface Waiting {
  readonly record: CheckinRecord;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

/** Coalesces check-ins per event-loop turn. */
export class CheckinBatcher {
  private waiting: Waiting[] = [];
  private scheduled = false;
  /** Batches sent and check-ins in them, for tests and measurements. */
  readonly stats = { batches: 0, checkins: 0 };

  constructor(private readonly send: (records: CheckinRecord[]) => Promise<unknown>) {}

  /** Resolves once the check-in's batch is durable in the primary. */
  record(record: CheckinRecord): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ record, resolve, reject });
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
    this.stats.checkins += batch.length;
    this.send(batch.map((w) => w.record)).then(
      () => {
        for (const w of batch) w.resolve();
      },
      (err: unknown) => {
        for (const w of batch) w.reject(err);
      },
    );
  }
}

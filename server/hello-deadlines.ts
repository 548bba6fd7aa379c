/**
 * The hello deadlines of one listener's channels, on one timer. Every
 * channel gets the same timeout, so deadlines fall due in the order the
 * channels opened: a first-in first-out queue whose head is the next one
 * due, and one timer armed for it. A timer per channel would allocate,
 * schedule and cancel a Timeout on every connect (a few microseconds each,
 * at thousands of connects per second in a reconnect storm).
 *
 * The queue keeps a channel until its deadline passes even when it sent
 * `hello` or closed long before: the channel decides whether it is still
 * overdue. The timer is unreferenced: the channels' sockets keep the
 * process alive, and a deadline of a channel that is gone needs nothing.
 */
import { performance } from 'node:perf_hooks';

/** A channel with a hello deadline. */
export interface HelloDeadlineTarget {
  /** The deadline passed: closes the channel with HELLO_TIMEOUT unless its first frame came meanwhile. */
  helloOverdue(): void;
}

/** Dropped entries at the front of the queue before it is compacted. */
const COMPACT_AFTER = 1024;

/** One listener's hello deadlines. */
export class HelloDeadlines {
  private targets: (HelloDeadlineTarget | undefined)[] = [];
  private dueAt: number[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;

  /**
   * @param timeoutMs time from the upgrade to the hello deadline
   * @param clock monotonic milliseconds (a seam for tests; the timer itself runs in real time)
   */
  constructor(
    private readonly timeoutMs: number,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  /** Starts a channel's deadline now. */
  add(target: HelloDeadlineTarget): void {
    this.targets.push(target);
    this.dueAt.push(this.clock() + this.timeoutMs);
    if (!this.timer) this.arm(this.timeoutMs);
  }

  /** Channels whose deadline has not passed yet (closed ones included). */
  get pending(): number {
    return this.targets.length - this.head;
  }

  private arm(delayMs: number): void {
    this.timer = setTimeout(() => this.fire(), Math.max(1, Math.ceil(delayMs)));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    const now = this.clock();
    while (this.head < this.targets.length && this.dueAt[this.head]! <= now) {
      const target = this.targets[this.head]!;
      this.targets[this.head] = undefined; // released now, not at the next compaction
      this.head += 1;
      target.helloOverdue();
    }
    if (this.head >= COMPACT_AFTER || this.head === this.targets.length) {
      this.targets = this.targets.slice(this.head);
      this.dueAt = this.dueAt.slice(this.head);
      this.head = 0;
    }
    // A timer may fire a little before the monotonic clock says the head is due: then it is armed again for the rest.
    if (this.head < this.targets.length) this.arm(this.dueAt[this.head]! - now);
  }
}

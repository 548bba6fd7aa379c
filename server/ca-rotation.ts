/**
 * CA rotation while the server runs: starts a rotation on disk (see
 * pki-store.ts), reloads the PKI, gives both listeners their new TLS
 * context, tells every live agent which CAs to trust, and performs the
 * cutover at its time (also after a restart: ensureServerPki does it when
 * the time has passed). One timer at most.
 */
import type { Logger } from 'pino';
import { httpError } from './errors.js';
import { ensureServerPki, rotateCa, trustedCaPems, type ServerPki } from './pki-store.js';

/** What the rotation needs from the server. */
export interface RotationDeps {
  readonly dir: string;
  readonly hosts: readonly string[];
  readonly get: () => ServerPki;
  /** Installs a reloaded PKI: new TLS contexts, `trust` to live agents. */
  readonly install: (pki: ServerPki) => void;
  readonly now: () => number;
  readonly log: Logger;
}

/** The rotation state, for `rollcall ca`. */
export interface CaStatus {
  readonly caPin: string;
  readonly nextCaPin: string | null;
  readonly cutoverAt: string | null;
  readonly previousCaTrusted: boolean;
}

/** Drives CA rotations of one server. */
export class CaRotation {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly deps: RotationDeps) {}

  /** The current state. */
  status(): CaStatus {
    const pki = this.deps.get();
    return {
      caPin: pki.caPin,
      nextCaPin: pki.next?.caPin ?? null,
      cutoverAt: pki.next ? new Date(pki.next.cutoverAt).toISOString() : null,
      previousCaTrusted: pki.previousCaPem !== null,
    };
  }

  /** Starts a rotation with the given overlap; the cutover follows by itself. */
  async rotate(overlapMs: number): Promise<CaStatus> {
    if (!Number.isSafeInteger(overlapMs) || overlapMs < 1000) throw httpError('BAD_REQUEST', 'the overlap must be at least 1 s');
    await rotateCa(this.deps.dir, this.deps.hosts, overlapMs, this.deps.now);
    await this.reload();
    const s = this.status();
    this.deps.log.info({ nextCaPin: s.nextCaPin, cutoverAt: s.cutoverAt }, 'CA rotation started; agents learn the new CA over their channel');
    return s;
  }

  /** Arms the cutover timer for a rotation found on disk. */
  start(): void {
    this.arm();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private async reload(): Promise<void> {
    const pki = await ensureServerPki(this.deps.dir, this.deps.hosts, new Date(this.deps.now()));
    this.deps.install(pki);
    this.arm();
  }

  private arm(): void {
    this.stop();
    const next = this.deps.get().next;
    if (!next) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reload().then(
        () => this.deps.log.info({ caPin: this.deps.get().caPin, trusted: trustedCaPems(this.deps.get())?.length ?? 1 }, 'CA rotation cut over; the new CA is presented now'),
        (err: unknown) => this.deps.log.error({ err: (err as Error).message }, 'CA cutover failed; retried at the next start'),
      );
    }, Math.max(0, next.cutoverAt - this.deps.now()));
    this.timer.unref();
  }
}

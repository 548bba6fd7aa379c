/**
 * An agent worker's certificate lookup: read from its own read-only
 * connection to the main database (storage/connect-reads.ts), with no IPC
 * and no work on the primary's thread. Only two cases still go to the
 * primary: a renewed certificate's first use (its promotion is a write,
 * and the primary is the only writer), and a read that fails here (logged,
 * at most once every few seconds; the agent is answered all the same).
 */
import type { Logger } from 'pino';
import { describeError } from '../../common/errors.js';
import { deviceOrRefusal, type Refusal } from '../agent-backend.js';
import type { SessionDevice } from '../agent-session.js';
import type { ConnectReads } from '../storage/connect-reads.js';

/** How the lookups were answered (sampled with the worker's stats). */
export interface LookupStats {
  /** Answered from the worker's own read. */
  local: number;
  /** Sent to the primary: renewal promotions and failed reads. */
  viaPrimary: number;
  /** Reads that failed here. */
  readErrors: number;
}

/** At most one "read failed" log line per this many milliseconds. */
const READ_ERROR_LOG_EVERY_MS = 5000;

type Lookup = (serial: string, cn: string | undefined) => Promise<SessionDevice | Refusal>;

/** The worker's lookupDevice: `reads` first, `primary` for promotions and when a read fails. */
export function workerDeviceLookup(reads: ConnectReads, primary: Lookup, log: Logger, now: () => number = Date.now): { lookup: Lookup; stats: Readonly<LookupStats> } {
  const stats: LookupStats = { local: 0, viaPrimary: 0, readErrors: 0 };
  let lastLogAt = -Infinity;
  let errorsAtLastLog = 0;
  const viaPrimary = (serial: string, cn: string | undefined): Promise<SessionDevice | Refusal> => {
    stats.viaPrimary += 1;
    return primary(serial, cn);
  };
  const readLocally = async (serial: string, cn: string | undefined): Promise<SessionDevice | Refusal | 'ask-primary'> => {
    const found = await reads.findForConnect(serial);
    if (!found) {
      const pending = await reads.pendingRenewal(serial);
      // A renewed certificate's first use: only the primary may promote it.
      if (pending && cn === pending.deviceId) return 'ask-primary';
    }
    return deviceOrRefusal(found, cn);
  };
  const lookup: Lookup = async (serial, cn) => {
    let answer: SessionDevice | Refusal | 'ask-primary';
    try {
      answer = await readLocally(serial, cn);
    } catch (err) {
      stats.readErrors += 1;
      const at = now();
      if (at - lastLogAt >= READ_ERROR_LOG_EVERY_MS) {
        log.error({ err: describeError(err), failedReads: stats.readErrors - errorsAtLastLog }, 'agent worker cannot read the database; asking the primary instead');
        lastLogAt = at;
        errorsAtLastLog = stats.readErrors;
      }
      return viaPrimary(serial, cn);
    }
    if (answer === 'ask-primary') return viaPrimary(serial, cn);
    stats.local += 1;
    return answer;
  };
  return { lookup, stats };
}

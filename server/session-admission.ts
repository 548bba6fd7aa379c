/**
 * What happens when an agent's `hello` is accepted: the capacity check,
 * registration in the session registry (with the duplicate-connection
 * policy: the newer channel replaces the older one, which may flag a
 * possible clone), the connect facts and sighting recorded, and the facts
 * `welcome` needs (the highest check-in and event sequence seen, the
 * trusted CAs during a rotation).
 *
 * One process runs this for its own sessions; with agent workers the
 * primary runs it for every worker's sessions (see cluster/worker-pool.ts),
 * so capacity and replacement are decided over the whole fleet.
 */
import type { Logger } from 'pino';
import { CloseCode } from '../common/close-codes.js';
import { describeError } from '../common/errors.js';
import { restartWindowMs } from './restart-spread.js';
import type { StoredAtLookup } from './agent-session.js';
import type { LiveSession, SessionRegistry } from './session-registry.js';
import type { ConnectFacts } from './storage/devices-store.js';

/** What a `hello` tells the server, with what the certificate already said. */
export interface HelloFacts {
  readonly deviceId: string;
  readonly groupId: string;
  readonly address: string;
  readonly at: number;
  readonly protocol: number;
  readonly connect: ConnectFacts;
  /** What storage held when the certificate was looked up (saves two reads per connect); absent: read now. */
  readonly stored?: StoredAtLookup;
}

/** The answer to a `hello`. */
export type AdmitDecision =
  | { readonly admitted: false; readonly maxAgents: number; readonly retryAfterMs: number }
  | {
      readonly admitted: true;
      /** True when an older channel of the device was closed with REPLACED. */
      readonly replaced: boolean;
      readonly possibleClone: boolean;
      /** Highest check-in sequence accepted for the device since the server started. */
      readonly latestSeq: number;
      /** Highest stored outbox event sequence (protocol 3 and later), else null. */
      readonly lastEventSeq: number | null;
      /** CAs to send in `trust` (protocol 3, during a CA rotation), else null. */
      readonly trustedCas: string[] | null;
      /** The window the fleet spreads its reconnects over after an unannounced loss (protocol 4's `welcome.reconnectWindowMs`). */
      readonly reconnectWindowMs: number;
    };

/** What admission needs. */
export interface AdmissionDeps<S extends LiveSession> {
  readonly registry: SessionRegistry<S>;
  readonly settings: { readonly maxAgents: number; readonly overloadRetryAfterMs: number };
  readonly random: () => number;
  readonly recordConnect: (deviceId: string, facts: ConnectFacts, stored?: StoredAtLookup) => Promise<void>;
  readonly flagPossibleClone: (deviceId: string, at: number) => Promise<void>;
  readonly latestSeq: (deviceId: string) => number;
  readonly lastEventSeq: (deviceId: string) => Promise<number>;
  readonly trustedCas: () => string[] | null;
  readonly recordSighting: (s: { deviceId: string; groupId: string; address: string; at: number }) => Promise<void>;
}

/**
 * Admits (or turns away) a session that sent a valid `hello`. Registration
 * happens before this returns; only the protocol-3 event sequence is read
 * asynchronously.
 */
export function admitSession<S extends LiveSession>(
  session: S,
  hello: HelloFacts,
  deps: AdmissionDeps<S>,
  logger: Logger | (() => Logger),
): AdmitDecision | Promise<AdmitDecision> {
  // Only failures are logged: the session's logger is made (when lazy) for those alone.
  const log = (): Logger => (typeof logger === 'function' ? logger() : logger);
  const { registry, settings } = deps;
  if (!registry.get(hello.deviceId) && registry.size >= settings.maxAgents) {
    return { admitted: false, maxAgents: settings.maxAgents, retryAfterMs: Math.round(settings.overloadRetryAfterMs * (1 + deps.random())) };
  }
  const { replaced, possibleClone } = registry.register(session, CloseCode.REPLACED);
  if (possibleClone) {
    deps.flagPossibleClone(hello.deviceId, hello.at).catch((err: unknown) => log().error({ err: describeError(err) }, 'cannot flag possible clone'));
  }
  const latestSeq = deps.latestSeq(hello.deviceId);
  deps.recordConnect(hello.deviceId, hello.connect, hello.stored).catch((err: unknown) => log().error({ err: describeError(err) }, 'cannot record connect'));
  deps
    .recordSighting({ deviceId: hello.deviceId, groupId: hello.groupId, address: hello.address, at: hello.at })
    .catch((err: unknown) => log().error({ err: describeError(err) }, 'cannot record sighting'));
  // Sized like a clean shutdown's spread, to the agents connected now (the whole fleet, with agent workers).
  const base = { admitted: true as const, replaced: replaced !== undefined, possibleClone, latestSeq, reconnectWindowMs: restartWindowMs(registry.size) };
  if (hello.protocol < 3) return { ...base, lastEventSeq: null, trustedCas: null };
  // Read with the certificate, a few milliseconds ago: events stored since then by an older channel of the device only
  // make it low, and an agent told a low number sends those events again, which are stored once.
  if (hello.stored) return { ...base, lastEventSeq: hello.stored.lastEventSeq, trustedCas: deps.trustedCas() };
  return deps.lastEventSeq(hello.deviceId).then((seq) => ({ ...base, lastEventSeq: seq, trustedCas: deps.trustedCas() }));
}

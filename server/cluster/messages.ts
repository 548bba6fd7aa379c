/**
 * The IPC protocol between the primary and its agent workers, field by
 * field. Calls have an answer (see rpc.ts); notes do not. A worker reads
 * certificate lookups from the database itself (worker-lookup.ts) and
 * calls `lookupDevice` only for a renewed certificate's first use; the
 * hellos of one event-loop turn go in one `admit` call; check-ins are
 * stored in the worker's own journal and told afterwards in a
 * `checkinsSeen` note per 200 ms (worker-checkins.ts); the end of a
 * channel is one `sessionClosed` note.
 *
 * CLUSTER_PROTOCOL_VERSION changes when a shape does: 1 (2026-11-21) first
 * version; 2 (2026-11-21) `admit` takes the hellos of one turn, init
 * carries the database file and the worker's handshake share, the primary
 * sends `handshakeShare`, samples count lookups, admit batches and the gate's handshakes;
 * 3 (2026-11-21) the `checkins` call is gone: workers journal their check-ins
 * and send `checkinsSeen` notes, the primary sends `trimJournal` after each
 * fold, samples count their journal writes.
 * Primary and workers always run the same build.
 */
import type { EnrollRequest, EnrollResponse } from '../../common/enroll-api.js';
import type { AgentEvent, Report } from '../../common/protocol.js';
import type { Refusal } from '../agent-backend.js';
import type { RejectEvent } from '../agent-listener.js';
import type { ReportContext } from '../agent-reports.js';
import type { SessionDevice } from '../agent-session.js';
import type { ServerConfig } from '../config.js';
import type { AdmitDecision, HelloFacts } from '../session-admission.js';
import type { DisconnectFacts } from '../session-registry.js';
import type { Observation } from '../storage/evidence-store.js';
import type { SeenCheckin } from './worker-checkins.js';
import type { EnrollmentToken } from '../storage/tokens-store.js';

/** Version of the shapes below. */
export const CLUSTER_PROTOCOL_VERSION = 3;

/** TLS material of the agent port (sent at start and after a CA rotation). */
export interface WorkerTls {
  readonly keyPem: string;
  readonly certChainPem: string;
  readonly clientCaPems: readonly string[];
  /** Served on /v1/ca. */
  readonly caCertPem: string;
}

/** Everything a worker needs to build its agent listener. */
export interface WorkerInit {
  readonly protocol: number;
  /** 1-based slot of this worker (stable across re-forks). */
  readonly slot: number;
  readonly config: ServerConfig;
  readonly instanceId: string;
  readonly tls: WorkerTls;
  /** Hex of the 48-byte TLS ticket keys shared by every worker. */
  readonly ticketKeys: string;
  /** The console port, advertised to agents in `welcome`. */
  readonly consolePort: number;
  /** The primary logger's level: a worker prints nothing the primary would drop. */
  readonly logLevel: string;
  /** The main database file, which the worker opens read-only for certificate lookups. */
  readonly databaseFile: string;
  /** This worker's part of the box's handshake budget (see handshake-budget.ts). */
  readonly handshakeShare: number;
}

/** One worker's resource sample (see AgentWorkerPool.stats). */
export interface WorkerSample {
  readonly pid: number;
  /** process.cpuUsage() user + system, µs, since the worker started. */
  readonly cpuUs: number;
  /** Resident set size, after a full GC when asked for and exposed (--expose-gc). */
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  /** Agent channels open in the worker (admitted or not). */
  readonly openChannels: number;
  /** Longest event-loop delay since the previous sample. */
  readonly eventLoopDelayMaxMs: number;
  /** Certificate lookups since the worker started: answered from its own read, or by the primary. */
  readonly lookups: { readonly local: number; readonly viaPrimary: number; readonly readErrors: number };
  /** `admit` calls since the worker started and the hellos in them. */
  readonly admits: { readonly batches: number; readonly hellos: number };
  /** This worker's handshake share now, and its gate's counters since it started (admission.ts). */
  readonly handshakeShare: number;
  readonly handshakes: { readonly admitted: number; readonly shed: number; readonly pending: number };
  /** Check-ins stored in the worker's journal since it started: group commits, check-ins, rows. */
  readonly checkins: { readonly batches: number; readonly checkins: number; readonly rows: number };
}

/** Calls a worker makes; the primary answers. */
export type PrimaryCalls = {
  /** The storage part of the check-in upgrade's certificate check, for a renewed certificate's first use (or a failed read in the worker). */
  readonly lookupDevice: { readonly args: { readonly serial: string; readonly cn: string | null }; readonly result: SessionDevice | Refusal };
  /** The hellos of one turn: registers each session globally (capacity, replacement), records connect facts and sighting; one decision per hello, in order. */
  readonly admit: { readonly args: { readonly items: readonly { readonly sid: number; readonly hello: HelloFacts }[] }; readonly result: readonly AdmitDecision[] };
  readonly report: { readonly args: { readonly report: Report; readonly ctx: ReportContext }; readonly result: null };
  readonly events: { readonly args: { readonly events: readonly AgentEvent[]; readonly ctx: ReportContext }; readonly result: { fresh: number; dropped: number } };
  readonly renew: { readonly args: { readonly deviceId: string; readonly csr: string }; readonly result: string };
  readonly enroll: { readonly args: EnrollRequest; readonly result: EnrollResponse };
  readonly findToken: { readonly args: { readonly secret: string }; readonly result: EnrollmentToken | null };
  readonly recordEvidence: { readonly args: { readonly observations: readonly Observation[] }; readonly result: null };
};

/** Notes a worker sends. */
export type PrimaryNotes = {
  /** The worker listens to the channel (messages sent before this are lost): send `init`. */
  readonly ready: Record<string, never>;
  /** The worker cannot start (`code`: Node's error code, as EADDRINUSE); it exits next. */
  readonly failed: { readonly code: string | null; readonly message: string };
  /** The worker's agent listener is bound (on the shared port). */
  readonly listening: { readonly port: number };
  /** A channel that was sent to `admit` closed. */
  readonly sessionClosed: { readonly sid: number; readonly facts: DisconnectFacts; readonly code: number; readonly reason: string; readonly ready: boolean };
  /** A refused check-in upgrade, for the live feed. */
  readonly reject: RejectEvent;
  /** A failed enrollment or portcheck report from `address`, counted by the primary for the whole box. */
  readonly enrollFailed: { readonly address: string };
  /** New check-ins the worker stored (in its journal) since its last note, in order: for the live feed and the latest sequence per device. */
  readonly checkinsSeen: { readonly items: readonly SeenCheckin[] };
};

/** Calls the primary makes; a worker answers. */
export type WorkerCalls = {
  /** Whether a session answered its last ping (the possible-clone rule). */
  readonly probe: { readonly args: { readonly sid: number }; readonly result: boolean };
  readonly stats: { readonly args: { readonly gc: boolean }; readonly result: WorkerSample };
  /** Spread, close every channel with 1001, stop listening; the worker exits after answering. */
  readonly shutdown: { readonly args: { readonly fleetSize: number; readonly expectedRestartMs: number }; readonly result: null };
};

/** Notes the primary sends. */
export type WorkerNotes = {
  readonly init: WorkerInit;
  readonly close: { readonly sid: number; readonly code: number; readonly reason: string };
  /** Tell protocol-3 agents which CAs to trust: one session (`sid`), or all of the worker's. */
  readonly trust: { readonly cas: string[]; readonly sid?: number };
  readonly tls: WorkerTls;
  readonly ticketKeys: { readonly keys: string };
  /** `address` had too many failed enrollments: refuse its attempts until `until` (epoch ms). */
  readonly blockAddress: { readonly address: string; readonly until: number };
  /** The worker's new part of the handshake budget (a worker started or stopped). */
  readonly handshakeShare: { readonly share: number };
  /** The primary folded this worker's journal up to row `upTo`: delete those rows (the worker is its file's one writer). */
  readonly trimJournal: { readonly upTo: number };
};

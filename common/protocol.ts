/**
 * The check-in wire protocol: JSON text frames, a union on `type`.
 *
 * Every message is defined once here as a TypeBox schema; the server and the
 * agent validate every frame they receive against it with Ajv. Field-by-field
 * documentation lives in docs/protocol.md.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Ajv, type ValidateFunction } from 'ajv';
import { RollcallError } from './errors.js';

/** Largest frame either side accepts, in bytes (ws enforces it with close 1009). */
export const MAX_FRAME_BYTES = 64 * 1024;

/** URL path of the check-in WebSocket on the agent port. */
export const CHECKIN_PATH = '/v1/agent/ws';

const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$' });
const Seq = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });
const ShortText = Type.String({ maxLength: 256 });

/** What the agent reports about its computer in `hello`. */
export const Inventory = Type.Object(
  {
    os: ShortText,
    release: ShortText,
    arch: Type.String({ maxLength: 32 }),
    cpus: Type.Integer({ minimum: 0, maximum: 65536 }),
    memoryBytes: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type Inventory = Static<typeof Inventory>;

/** Agent → server: first frame on every connection. */
export const Hello = Type.Object(
  {
    type: Type.Literal('hello'),
    protocol: Type.Integer({ minimum: 1, maximum: 1000 }),
    deviceId: Id,
    agentVersion: Type.String({ minLength: 1, maxLength: 64 }),
    hostname: Type.String({ minLength: 1, maxLength: 253 }),
    fingerprint: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    inventory: Inventory,
    /** Highest sequence number the agent has already used (0 when none). */
    lastSeq: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER }),
  },
  { additionalProperties: false },
);
export type Hello = Static<typeof Hello>;

/** Agent → server: a periodic check-in. */
export const Checkin = Type.Object(
  {
    type: Type.Literal('checkin'),
    seq: Seq,
    /** Agent clock, Unix milliseconds, when the check-in was made. */
    sentAt: Type.Integer({ minimum: 0 }),
    uptimeSec: Type.Number({ minimum: 0 }),
    load1: Type.Optional(Type.Number({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type Checkin = Static<typeof Checkin>;

/** A listener port as the server advertises it. */
export const ListenerPort = Type.Object(
  { port: Type.Integer({ minimum: 1, maximum: 65535 }), role: Type.Union([Type.Literal('agent'), Type.Literal('console')]), required: Type.Boolean() },
  { additionalProperties: false },
);
export type ListenerPort = Static<typeof ListenerPort>;

/** Server → agent: answer to `hello`. */
export const Welcome = Type.Object(
  {
    type: Type.Literal('welcome'),
    protocol: Type.Integer({ minimum: 1 }),
    deviceId: Id,
    intervalSec: Type.Integer({ minimum: 1, maximum: 86_400 }),
    group: Type.Object({ id: Id, path: Type.String({ maxLength: 4096 }) }, { additionalProperties: false }),
    /** Server clock, Unix milliseconds. */
    serverTime: Type.Integer({ minimum: 0 }),
    /** Highest check-in sequence the server holds durably for this device. */
    lastSeq: Type.Integer({ minimum: 0 }),
    /** Protocol 2: the server's listener ports, for the agent's reachability probes. */
    ports: Type.Optional(Type.Array(ListenerPort, { maxItems: 16 })),
    /** Protocol 3: highest outbox event sequence the server holds for this device. */
    lastEventSeq: Type.Optional(Type.Integer({ minimum: 0 })),
    /** Protocol 4: the window, sized to the fleet, over which agents spread their reconnects after losing the server (see common/backoff.ts). */
    reconnectWindowMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 3_600_000 })),
  },
  { additionalProperties: false },
);
export type Welcome = Static<typeof Welcome>;

/** Server → agent: the check-in with this sequence number is durable. */
export const Ack = Type.Object({ type: Type.Literal('ack'), seq: Seq }, { additionalProperties: false });
export type Ack = Static<typeof Ack>;

/** Server → agent: new settings, applied at once. */
export const Config = Type.Object(
  { type: Type.Literal('config'), intervalSec: Type.Integer({ minimum: 1, maximum: 86_400 }) },
  { additionalProperties: false },
);
export type Config = Static<typeof Config>;

/** Either side: why the connection is about to close, or a recoverable problem. */
export const ErrorMessage = Type.Object(
  {
    type: Type.Literal('error'),
    code: Type.String({ minLength: 1, maxLength: 64 }),
    message: Type.String({ maxLength: 1024 }),
    retryAfterMs: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type ErrorMessage = Static<typeof ErrorMessage>;

const Millis = Type.Integer({ minimum: 0 });

/** One probe of one server port, as an agent saw it. */
export const ProbeResult = Type.Object(
  {
    host: Type.String({ minLength: 1, maxLength: 253 }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    role: Type.Union([Type.Literal('agent'), Type.Literal('console')]),
    ok: Type.Boolean(),
    /** A failure class of common/portcheck/types.ts. */
    failure: Type.Optional(Type.String({ maxLength: 64 })),
    step: Type.Optional(Type.String({ maxLength: 32 })),
    ms: Type.Number({ minimum: 0 }),
    at: Millis,
  },
  { additionalProperties: false },
);
export type ProbeResult = Static<typeof ProbeResult>;

/** One connection attempt that failed before `welcome`, recorded by the agent. */
export const FailedAttempt = Type.Object(
  {
    server: Type.String({ minLength: 1, maxLength: 300 }),
    /** The agent's failure class: DNS, REFUSED, TIMEOUT, TLS, REJECTED, PROTOCOL or CLOSED. */
    class: Type.String({ minLength: 1, maxLength: 16 }),
    code: Type.String({ maxLength: 64 }),
    message: Type.String({ maxLength: 256 }),
    at: Millis,
  },
  { additionalProperties: false },
);
export type FailedAttempt = Static<typeof FailedAttempt>;

/** Agent → server (protocol 2): probe results and failed attempts since the last report. */
export const Report = Type.Object(
  {
    type: Type.Literal('report'),
    id: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    probes: Type.Array(ProbeResult, { maxItems: 64 }),
    attempts: Type.Array(FailedAttempt, { maxItems: 256 }),
    /** Attempts dropped because the agent's bounded list was full. */
    droppedAttempts: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type Report = Static<typeof Report>;

/** Server → agent (protocol 2): report `id` is stored. */
export const ReportAck = Type.Object({ type: Type.Literal('report_ack'), id: Type.Integer({ minimum: 1 }) }, { additionalProperties: false });
export type ReportAck = Static<typeof ReportAck>;

/** Agent → server (protocol 2), instead of `hello`: a diagnostic round trip that does not take the device's place. */
export const Diagnose = Type.Object(
  { type: Type.Literal('diagnose'), nonce: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }) },
  { additionalProperties: false },
);
export type Diagnose = Static<typeof Diagnose>;

/** Server → agent (protocol 2): answer to `diagnose`; the server then closes with 1000. */
export const DiagnoseAck = Type.Object(
  {
    type: Type.Literal('diagnose_ack'),
    nonce: Type.String({ maxLength: 64 }),
    instanceId: Type.String({ maxLength: 64 }),
    deviceId: Id,
    clientAddress: Type.String({ maxLength: 64 }),
  },
  { additionalProperties: false },
);
export type DiagnoseAck = Static<typeof DiagnoseAck>;

/** Data of an outbox event, by kind (protocol 3). */
export const EVENT_DATA = {
  /** A connection attempt that failed before `welcome`. */
  attempt: FailedAttempt,
  /** One round of port probes. */
  probes: Type.Object({ results: Type.Array(ProbeResult, { maxItems: 64 }) }, { additionalProperties: false }),
  /** The inventory changed since the last one recorded. */
  inventory: Inventory,
  /** The outbox was full: `count` oldest events, up to `throughSeq`, were dropped unsent. */
  dropped: Type.Object({ count: Type.Integer({ minimum: 1 }), throughSeq: Seq }, { additionalProperties: false }),
  /**
   * A check-in the agent recorded while it had no live channel (one per
   * interval): the machine's uptime, and the failure class of the last
   * connection attempt when known (added 2026-11-21, still protocol 3).
   */
  checkin: Type.Object(
    { uptimeSec: Type.Number({ minimum: 0 }), reason: Type.Optional(Type.String({ minLength: 1, maxLength: 16 })) },
    { additionalProperties: false },
  ),
  /** Test-only load (`ROLLCALL_AGENT_TEST_EVENTS`): stored, otherwise ignored. */
  synthetic: Type.Object({ n: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
} as const;

/** Kinds of outbox events. */
export type EventKind = keyof typeof EVENT_DATA;

/** One outbox event on the wire: the agent's own sequence number (separate from check-in numbers). */
export const AgentEvent = Type.Union(
  Object.entries(EVENT_DATA).map(([kind, data]) =>
    Type.Object({ seq: Seq, kind: Type.Literal(kind), at: Millis, data }, { additionalProperties: false }),
  ),
);
export type AgentEvent = { [K in EventKind]: { seq: number; kind: K; at: number; data: Static<(typeof EVENT_DATA)[K]> } }[EventKind];

/** Most events in one `events` frame. */
export const MAX_EVENTS_PER_FRAME = 500;

/** Agent → server (protocol 3): outbox events, in strictly increasing `seq` order. */
export const Events = Type.Object(
  { type: Type.Literal('events'), events: Type.Array(AgentEvent, { minItems: 1, maxItems: MAX_EVENTS_PER_FRAME }) },
  { additionalProperties: false },
);
export type Events = { type: 'events'; events: AgentEvent[] };

/** Server → agent (protocol 3): every event of this device up to `upTo` is stored. */
export const EventsAck = Type.Object({ type: Type.Literal('events_ack'), upTo: Seq }, { additionalProperties: false });
export type EventsAck = Static<typeof EventsAck>;

/** Agent → server (protocol 3): a certificate signing request for a renewed certificate. */
export const Renew = Type.Object({ type: Type.Literal('renew'), csr: Type.String({ minLength: 1, maxLength: 16 * 1024 }) }, { additionalProperties: false });
export type Renew = Static<typeof Renew>;

/** Server → agent (protocol 3): the renewed certificate (PEM), valid once the agent connects with it. */
export const Renewed = Type.Object(
  { type: Type.Literal('renewed'), certificate: Type.String({ minLength: 1, maxLength: 16 * 1024 }) },
  { additionalProperties: false },
);
export type Renewed = Static<typeof Renewed>;

/**
 * Server → agent (protocol 3): the CAs to trust, newest first, sent after
 * `welcome` while a CA rotation runs or an old CA is still trusted, and to
 * every live channel when a rotation starts. The agent trusts them for the
 * server's certificate from its next connection on, and renews its own
 * certificate when it does not come from the newest.
 */
export const Trust = Type.Object(
  { type: Type.Literal('trust'), caCertificates: Type.Array(Type.String({ minLength: 1, maxLength: 16 * 1024 }), { minItems: 1, maxItems: 4 }) },
  { additionalProperties: false },
);
export type Trust = Static<typeof Trust>;

/** Messages the agent may send. */
export type AgentMessage = Hello | Checkin | Report | Diagnose | Events | Renew | ErrorMessage;
/** Messages the server may send. */
export type ServerMessage = Welcome | Ack | Config | ReportAck | DiagnoseAck | EventsAck | Renewed | Trust | ErrorMessage;

const AGENT_SCHEMAS: Record<AgentMessage['type'], TSchema> = {
  hello: Hello,
  checkin: Checkin,
  report: Report,
  diagnose: Diagnose,
  events: Events,
  renew: Renew,
  error: ErrorMessage,
};
const SERVER_SCHEMAS: Record<ServerMessage['type'], TSchema> = {
  events_ack: EventsAck,
  renewed: Renewed,
  trust: Trust,
  welcome: Welcome,
  ack: Ack,
  config: Config,
  report_ack: ReportAck,
  diagnose_ack: DiagnoseAck,
  error: ErrorMessage,
};

/** The schemas the agent validates frames from the server with (scripts/build-agent.ts precompiles them). */
export const SERVER_MESSAGE_SCHEMAS: Readonly<Record<ServerMessage['type'], TSchema>> = SERVER_SCHEMAS;

/** A compiled decoder for one direction of the protocol. */
export interface Decoder<T> {
  /** Parses and validates one text frame; throws RollcallError `MALFORMED_FRAME`. */
  decode(frame: string | Buffer): T;
}

function buildDecoder<T extends { type: string }>(schemas: Record<string, TSchema>): Decoder<T> {
  const ajv = new Ajv({ allErrors: false, strict: true });
  const validators = new Map<string, ValidateFunction>();
  for (const [type, schema] of Object.entries(schemas)) validators.set(type, ajv.compile(schema));
  return {
    decode(frame) {
      const text = typeof frame === 'string' ? frame : frame.toString('utf8');
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (err) {
        throw new RollcallError('MALFORMED_FRAME', 'frame is not valid JSON', { cause: err });
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw new RollcallError('MALFORMED_FRAME', 'frame is not a JSON object');
      }
      const type = (value as { type?: unknown }).type;
      if (typeof type !== 'string') throw new RollcallError('MALFORMED_FRAME', 'frame has no string "type"');
      const validate = validators.get(type);
      if (!validate) throw new RollcallError('MALFORMED_FRAME', `unknown message type "${type.slice(0, 40)}"`);
      if (!validate(value)) {
        const first = validate.errors?.[0];
        const where = first?.instancePath || '/';
        throw new RollcallError('MALFORMED_FRAME', `invalid "${type}" message: ${where} ${first?.message ?? 'is invalid'}`);
      }
      return value as T;
    },
  };
}

/** Builds the decoder the server uses for frames from agents. */
export function agentMessageDecoder(): Decoder<AgentMessage> {
  return buildDecoder<AgentMessage>(AGENT_SCHEMAS);
}

/** Builds the decoder the agent uses for frames from the server. */
export function serverMessageDecoder(): Decoder<ServerMessage> {
  return buildDecoder<ServerMessage>(SERVER_SCHEMAS);
}

/** Serialises a message for the wire. */
export function encode(message: AgentMessage | ServerMessage): string {
  return JSON.stringify(message);
}

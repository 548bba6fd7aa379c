/**
 * One agent's check-in channel, from the upgrade to the close.
 *
 * The certificate was checked before the upgrade (see agent-listener.ts),
 * so the session starts knowing which device it serves. It then waits for
 * `hello` (with a deadline), answers `welcome`, and acks every check-in
 * once it is durable. Any protocol violation closes the channel with one
 * of our close codes after an `error` frame that says why.
 */
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { CloseCode } from '../common/close-codes.js';
import { describeError, RollcallError } from '../common/errors.js';
import {
  encode,
  type AgentEvent,
  type AgentMessage,
  type Checkin,
  type Decoder,
  type Diagnose,
  type Events,
  type Hello,
  type ListenerPort,
  type Renew,
  type Report,
  type ServerMessage,
} from '../common/protocol.js';
import type { ReportContext } from './agent-reports.js';
import { MIN_PROTOCOL_VERSION, PROTOCOL_VERSION } from '../common/version.js';
import type { CheckinRecord } from './checkin-writer.js';
import { FrameBudget } from './frame-budget.js';
import type { AdmitDecision, HelloFacts } from './session-admission.js';
import type { DisconnectFacts, LiveSession } from './session-registry.js';

/**
 * Where a session's `hello` is decided and its end reported: the local
 * registry in a single process, the primary over IPC in an agent worker.
 */
export interface SessionAdmission {
  /** Admits or turns away a session that sent a valid hello (see session-admission.ts); `log` gives the session's logger (made on demand). */
  admit(session: AgentSession, hello: HelloFacts, log: () => Logger): AdmitDecision | Promise<AdmitDecision>;
  /** The channel closed (whether or not it was admitted). */
  release(session: AgentSession, end: SessionEnd): void;
}

/** How a channel ended. */
export interface SessionEnd extends DisconnectFacts {
  readonly code: number;
  readonly reason: string;
  /** True when it had been admitted (a `connect` event was published). */
  readonly ready: boolean;
}

/** What a session needs from the rest of the server. */
export interface SessionDeps {
  readonly decoder: Decoder<AgentMessage>;
  readonly admission: SessionAdmission;
  readonly recordCheckin: (r: CheckinRecord) => Promise<void>;
  readonly settings: {
    readonly helloTimeoutMs: number;
    readonly checkinIntervalSec: number;
    readonly maxFramesPerSec: number;
    readonly frameBurst: number;
  };
  /** This server instance, for `diagnose_ack`. */
  readonly instanceId: string;
  /** The listener ports advertised in `welcome` (protocol 2). */
  readonly listenerPorts: () => ListenerPort[];
  /** Stores a report's observations durably. */
  readonly recordReport: (report: Report, ctx: ReportContext) => Promise<void>;
  /** Stores outbox events once per (device, seq), with their health observations (protocol 3). */
  readonly recordEvents: (events: readonly AgentEvent[], ctx: ReportContext) => Promise<{ fresh: number; dropped: number }>;
  /** Signs a renewal CSR for the device (protocol 3); resolves with the certificate PEM, usable once the agent connects with it. */
  readonly renewCertificate: (deviceId: string, csrPem: string) => Promise<string>;
  readonly now: () => number;
  /** Observes lifecycle events (live feed, metrics); a worker leaves this to the primary. */
  readonly onEvent?: (e: SessionEvent) => void;
}

/** A lifecycle event of a session. */
export type SessionEvent =
  | { readonly kind: 'connect'; readonly deviceId: string; readonly address: string; readonly at: number }
  | { readonly kind: 'checkin'; readonly deviceId: string; readonly seq: number; readonly at: number }
  | { readonly kind: 'disconnect'; readonly deviceId: string; readonly code: number; readonly reason: string; readonly at: number };

/** The device facts known before the upgrade. */
export interface SessionDevice {
  readonly id: string;
  readonly group: { readonly id: string; readonly path: string };
  readonly lastSeq: number;
  /** What storage held for the device when its certificate was looked up, so `hello` need not read it again. */
  readonly stored?: StoredAtLookup;
}

/** The stored facts `hello` needs, as read with the certificate lookup. */
export interface StoredAtLookup {
  /** The hardware fingerprint on record (null before the first connect). */
  readonly fingerprint: string | null;
  readonly lastAddress: string | null;
  /** Highest outbox event sequence stored. */
  readonly lastEventSeq: number;
}

/** One live agent channel. */
export class AgentSession implements LiveSession {
  readonly deviceId: string;
  fingerprint = '';
  alive = true;
  /** A frame arrived since the last heartbeat pass: the channel is in use, so that pass sends no ping. */
  private active = false;
  /** Heartbeat passes in a row that found the channel quiet. */
  private quietPasses = 0;
  /** A ping went out and neither its pong nor any frame came back yet. */
  private awaitingPong = false;
  private state: 'awaiting_hello' | 'admitting' | 'ready' | 'closed' = 'awaiting_hello';
  /** The protocol version agreed in `welcome`. */
  private protocol = 0;
  private lastEventSeqSeen = 0;
  private renewing = false;
  private lastSeq: number;
  private readonly budget: FrameBudget;
  /** True until the first frame that ends the hello deadline (hello or diagnose) or the close. */
  private helloDue = true;
  private readonly openedAt: number;
  private closedByServer = false;
  /** Made on the first line logged: most channels log nothing below info, and a child logger costs every agent some 350 bytes. */
  private ownLog: Logger | undefined;

  /**
   * @param parentLog the listener's logger; the session logs through a child bound to `{ deviceId, connId }`
   * @param connId this channel's number on the listener (`connId` is `c<n>` in log lines)
   */
  constructor(
    private readonly socket: WebSocket,
    private readonly device: SessionDevice,
    private readonly address: string,
    private readonly deps: SessionDeps,
    private readonly parentLog: Logger,
    private readonly connId: number,
  ) {
    this.deviceId = device.id;
    this.lastSeq = device.lastSeq;
    this.openedAt = deps.now();
    this.budget = new FrameBudget(deps.settings.maxFramesPerSec, deps.settings.frameBurst, this.openedAt);
    socket.on('message', (data, isBinary) => this.onFrame(data as Buffer, isBinary));
    socket.on('pong', () => {
      this.alive = true;
      this.awaitingPong = false;
    });
    socket.on('close', (code, reason) => this.onClose(code, reason.toString()));
    socket.on('error', (err) => this.say('warn', { err: describeError(err) }, 'agent socket error'));
  }

  /** The hello deadline passed (the listener keeps the deadlines: hello-deadlines.ts): closes the channel unless hello came. */
  helloOverdue(): void {
    if (this.helloDue) this.fail(CloseCode.HELLO_TIMEOUT, 'HELLO_TIMEOUT', 'no hello before the deadline');
  }

  /** Closes the channel with a code; safe to call more than once. */
  close(code: number, reason: string): void {
    if (this.socket.readyState === this.socket.CLOSED || this.socket.readyState === this.socket.CLOSING) return;
    this.closedByServer = true;
    this.socket.close(code, reason.slice(0, 120));
  }

  /** Tells a protocol-3 agent which CAs to trust (CA rotation); older agents are left alone. */
  sendTrust(caCertificates: string[]): void {
    if (this.state === 'ready' && this.protocol >= 3) this.send({ type: 'trust', caCertificates });
  }

  /**
   * One heartbeat pass. A channel that sent a frame since the last pass is
   * left alone (traffic shows it is there); one quiet for a whole pass no
   * longer counts as alive (so a reconnect that replaces it is not taken for
   * a clone), and once quiet for `pingAfterQuietPasses` passes it is pinged
   * (see quietPassesBeforePing: agents that check in on time never are); one
   * that left a ping unanswered for a pass is terminated.
   */
  heartbeat(pingAfterQuietPasses: number): void {
    if (this.active) {
      this.active = false;
      this.quietPasses = 0;
      this.awaitingPong = false;
      this.alive = true;
      return;
    }
    if (this.awaitingPong) {
      this.say('info', { reason: 'no pong' }, 'agent unresponsive; terminating');
      this.socket.terminate();
      return;
    }
    this.quietPasses += 1;
    this.alive = false;
    if (this.quietPasses < pingAfterQuietPasses) return;
    this.awaitingPong = true;
    this.socket.ping();
  }

  /** The session's child logger, made on first use. */
  private logger(): Logger {
    return (this.ownLog ??= this.parentLog.child({ deviceId: this.deviceId, connId: `c${this.connId}` }));
  }

  /** Logs one line through the session's logger, making it only when the level is on. */
  private say(level: 'debug' | 'info' | 'warn' | 'error', fields: object, msg: string): void {
    if (this.parentLog.isLevelEnabled(level)) this.logger()[level](fields, msg);
  }

  private send(msg: ServerMessage): void {
    if (this.socket.readyState === this.socket.OPEN) this.socket.send(encode(msg));
  }

  private fail(code: number, errorCode: string, message: string, retryAfterMs?: number): void {
    if (this.state === 'closed' || this.socket.readyState !== this.socket.OPEN) return; // one error frame and log line per channel
    this.say('warn', { closeCode: code, errorCode, reason: message }, 'closing agent channel');
    this.send({ type: 'error', code: errorCode, message, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });
    this.close(code, message);
  }

  private onFrame(data: Buffer, isBinary: boolean): void {
    // Frames that arrive after we started closing (a violation, replacement, revocation) are not acted on.
    if (this.state === 'closed' || this.socket.readyState !== this.socket.OPEN) return;
    this.alive = true;
    this.active = true;
    if (!this.budget.take(this.deps.now())) {
      this.fail(CloseCode.RATE_LIMITED, 'RATE_LIMITED', 'too many frames; slow down', 1000);
      return;
    }
    if (isBinary) {
      this.fail(CloseCode.MALFORMED_FRAME, 'MALFORMED_FRAME', 'binary frames are not accepted');
      return;
    }
    let msg: AgentMessage;
    try {
      msg = this.deps.decoder.decode(data);
    } catch (err) {
      this.fail(CloseCode.MALFORMED_FRAME, 'MALFORMED_FRAME', err instanceof RollcallError ? err.message : 'malformed frame');
      return;
    }
    switch (msg.type) {
      case 'hello':
        this.onHello(msg);
        break;
      case 'checkin':
        this.onCheckin(msg);
        break;
      case 'report':
        this.onReport(msg);
        break;
      case 'diagnose':
        this.onDiagnose(msg);
        break;
      case 'events':
        this.onEvents(msg);
        break;
      case 'renew':
        this.onRenew(msg);
        break;
      case 'error':
        this.say('warn', { agentErrorCode: msg.code, agentError: msg.message }, 'agent reported an error');
        break;
    }
  }

  private onHello(hello: Hello): void {
    if (this.state !== 'awaiting_hello') {
      this.fail(CloseCode.UNEXPECTED_MESSAGE, 'UNEXPECTED_MESSAGE', 'hello was already received');
      return;
    }
    this.helloDue = false;
    if (hello.protocol < MIN_PROTOCOL_VERSION || hello.protocol > PROTOCOL_VERSION) {
      this.fail(
        CloseCode.UNSUPPORTED_VERSION,
        'UNSUPPORTED_VERSION',
        `protocol ${hello.protocol} is not supported; this server speaks ${MIN_PROTOCOL_VERSION}-${PROTOCOL_VERSION}`,
      );
      return;
    }
    if (hello.deviceId !== this.deviceId) {
      this.fail(CloseCode.UNKNOWN_DEVICE, 'UNKNOWN_DEVICE', 'hello names a device other than the certificate');
      return;
    }
    this.state = 'admitting';
    this.fingerprint = hello.fingerprint;
    const now = this.deps.now();
    const facts: HelloFacts = {
      deviceId: this.deviceId,
      groupId: this.device.group.id,
      address: this.address,
      at: now,
      protocol: hello.protocol,
      ...(this.device.stored ? { stored: this.device.stored } : {}),
      connect: {
        at: now,
        address: this.address,
        hostname: hello.hostname,
        fingerprint: hello.fingerprint,
        agentVersion: hello.agentVersion,
        os: `${hello.inventory.os} ${hello.inventory.release} ${hello.inventory.arch}`.trim(),
        intervalSec: this.deps.settings.checkinIntervalSec,
      },
    };
    const refused = (err: unknown): void => {
      this.say('error', { err: describeError(err) }, 'cannot admit the channel (event store or primary unavailable); closing so the agent retries');
      this.close(1011, 'event store unavailable');
    };
    let decision: AdmitDecision | Promise<AdmitDecision>;
    try {
      decision = this.deps.admission.admit(this, facts, () => this.logger());
    } catch (err) {
      refused(err);
      return;
    }
    if (decision instanceof Promise) decision.then((d) => this.onAdmitted(d, hello, now), refused);
    else this.onAdmitted(decision, hello, now);
  }

  private onAdmitted(d: AdmitDecision, hello: Hello, now: number): void {
    if (this.state !== 'admitting') return; // closed while the decision was on its way
    if (!d.admitted) {
      this.state = 'awaiting_hello';
      this.fail(CloseCode.OVERLOADED, 'OVERLOADED', `server at capacity (${d.maxAgents} agents); retry later`, d.retryAfterMs);
      return;
    }
    this.state = 'ready';
    if (d.replaced) this.say('warn', { possibleClone: d.possibleClone }, 'device connected again; older connection replaced');
    this.lastSeq = Math.max(this.lastSeq, d.latestSeq);
    this.protocol = Math.min(hello.protocol, PROTOCOL_VERSION);
    this.send({
      type: 'welcome',
      protocol: this.protocol,
      deviceId: this.deviceId,
      intervalSec: this.deps.settings.checkinIntervalSec,
      group: { id: this.device.group.id, path: this.device.group.path },
      serverTime: now,
      lastSeq: this.lastSeq,
      ...(hello.protocol >= 2 ? { ports: this.deps.listenerPorts() } : {}),
      ...(d.lastEventSeq === null ? {} : { lastEventSeq: d.lastEventSeq }),
      ...(this.protocol >= 4 ? { reconnectWindowMs: d.reconnectWindowMs } : {}),
    });
    if (d.trustedCas) this.sendTrust(d.trustedCas);
    this.say('info', { hostname: hello.hostname, agentVersion: hello.agentVersion, protocol: hello.protocol }, 'agent connected');
    this.deps.onEvent?.({ kind: 'connect', deviceId: this.deviceId, address: this.address, at: now });
  }

  /** A diagnostic round trip: answered, logged, closed; the device's real channel is left alone. */
  private onDiagnose(d: Diagnose): void {
    if (this.state !== 'awaiting_hello') {
      this.fail(CloseCode.UNEXPECTED_MESSAGE, 'UNEXPECTED_MESSAGE', 'diagnose is only allowed as the first frame');
      return;
    }
    this.helloDue = false;
    this.say('info', { address: this.address }, 'agent diagnose round trip');
    this.send({ type: 'diagnose_ack', nonce: d.nonce, instanceId: this.deps.instanceId, deviceId: this.deviceId, clientAddress: this.address });
    this.close(1000, 'diagnose done');
  }

  private onReport(r: Report): void {
    if (this.state !== 'ready') {
      this.fail(CloseCode.UNEXPECTED_MESSAGE, 'UNEXPECTED_MESSAGE', 'report before hello');
      return;
    }
    const ctx = { deviceId: this.deviceId, groupId: this.device.group.id, sourceAddress: this.address, now: this.deps.now() };
    this.deps.recordReport(r, ctx).then(
      () => {
        if (r.droppedAttempts > 0) this.say('warn', { dropped: r.droppedAttempts }, 'agent dropped failed-attempt records (its list was full)');
        this.send({ type: 'report_ack', id: r.id });
      },
      (err: unknown) => {
        this.say('error', { err: describeError(err), reportId: r.id }, 'report not stored; closing so the agent resends');
        this.close(1011, 'report could not be stored');
      },
    );
  }

  private onEvents(m: Events): void {
    if (this.state !== 'ready' || this.protocol < 3) {
      this.fail(CloseCode.UNEXPECTED_MESSAGE, 'UNEXPECTED_MESSAGE', this.state === 'ready' ? 'events need protocol 3' : 'events before hello');
      return;
    }
    for (let i = 1; i < m.events.length; i += 1) {
      if (m.events[i]!.seq <= m.events[i - 1]!.seq) {
        this.fail(CloseCode.MALFORMED_FRAME, 'MALFORMED_FRAME', `event sequence numbers must increase (seq ${m.events[i]!.seq} after ${m.events[i - 1]!.seq})`);
        return;
      }
    }
    const upTo = m.events[m.events.length - 1]!.seq;
    if (m.events[0]!.seq <= this.lastEventSeqSeen) this.say('debug', { from: m.events[0]!.seq, upTo }, 'events redelivered');
    this.lastEventSeqSeen = Math.max(this.lastEventSeqSeen, upTo);
    const ctx = { deviceId: this.deviceId, groupId: this.device.group.id, sourceAddress: this.address, now: this.deps.now() };
    this.deps.recordEvents(m.events, ctx).then(
      ({ fresh, dropped }) => {
        if (dropped > 0) this.say('warn', { dropped }, "agent dropped events unsent (its outbox was full)");
        this.say('debug', { upTo, fresh, redelivered: m.events.length - fresh }, 'events stored');
        this.send({ type: 'events_ack', upTo });
      },
      (err: unknown) => {
        this.say('error', { err: describeError(err), upTo }, 'events not stored; closing so the agent resends');
        this.close(1011, 'events could not be stored');
      },
    );
  }

  private onRenew(m: Renew): void {
    if (this.state !== 'ready' || this.protocol < 3) {
      this.fail(CloseCode.UNEXPECTED_MESSAGE, 'UNEXPECTED_MESSAGE', this.state === 'ready' ? 'renew needs protocol 3' : 'renew before hello');
      return;
    }
    if (this.renewing) {
      this.fail(CloseCode.UNEXPECTED_MESSAGE, 'UNEXPECTED_MESSAGE', 'a renewal is already in progress on this channel');
      return;
    }
    this.renewing = true;
    this.deps.renewCertificate(this.deviceId, m.csr).then(
      (certificate) => {
        this.renewing = false;
        this.say('info', {}, 'renewed the agent certificate; the old one stays valid until the new one connects');
        this.send({ type: 'renewed', certificate });
      },
      (err: unknown) => {
        this.renewing = false;
        const failure = err instanceof RollcallError ? err : new RollcallError('RENEW_FAILED', describeError(err), { cause: err });
        this.say('warn', { err: describeError(err), code: failure.code }, 'certificate renewal refused');
        // A refused CSR is the agent's problem to fix; the channel itself stays usable.
        this.send({ type: 'error', code: failure.code, message: `certificate renewal refused: ${failure.message}`.slice(0, 1024) });
      },
    );
  }

  private onCheckin(c: Checkin): void {
    if (this.state !== 'ready') {
      this.fail(CloseCode.UNEXPECTED_MESSAGE, 'UNEXPECTED_MESSAGE', 'check-in before hello');
      return;
    }
    const now = this.deps.now();
    const fresh = c.seq > this.lastSeq;
    if (fresh) this.lastSeq = c.seq;
    this.deps
      .recordCheckin({ deviceId: this.deviceId, seq: c.seq, at: now, address: this.address, count: fresh ? 1 : 0 })
      .then(
        () => {
          this.send({ type: 'ack', seq: c.seq });
          if (fresh) this.deps.onEvent?.({ kind: 'checkin', deviceId: this.deviceId, seq: c.seq, at: now });
        },
        (err: unknown) => {
          this.say('error', { err: describeError(err), seq: c.seq }, 'check-in not stored; closing so the agent resends');
          this.close(1011, 'check-in could not be stored');
        },
      );
  }

  private onClose(code: number, reason: string): void {
    this.helloDue = false;
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    const now = this.deps.now();
    this.deps.admission.release(this, { at: now, clean: !this.closedByServer && (code === 1000 || code === 1001), code, reason, ready: wasReady });
    this.say('info', { closeCode: code, reason, seconds: Math.round((now - this.openedAt) / 1000), afterHello: wasReady }, 'agent disconnected');
    if (wasReady) this.deps.onEvent?.({ kind: 'disconnect', deviceId: this.deviceId, code, reason, at: now });
  }
}

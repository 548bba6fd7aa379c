/**
 * One check-in channel, from dialling to close. It resolves with the
 * classified reason the channel ended (or `null` when we stopped it), and
 * never rejects: the supervisor decides what happens next.
 */
import os from 'node:os';
import net from 'node:net';
import type { SecureContext, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { WebSocket } from 'ws';
import { CloseCode } from '../common/close-codes.js';
import { RollcallError } from '../common/errors.js';
import { encode, MAX_FRAME_BYTES, serverMessageDecoder, type Inventory, type ServerMessage, type Welcome } from '../common/protocol.js';
import { PROTOCOL_VERSION, ROLLCALL_VERSION } from '../common/version.js';
import { classifyClose, classifyError, classifyUpgradeRefusal, type Failure } from './errors.js';
import { EventDelivery, type EventSource } from './event-delivery.js';

/** What one connection needs. */
export interface ConnectionParams {
  readonly host: string;
  readonly port: number;
  readonly path: string;
  /** One TLS context (CA, our certificate and key) reused for every connection. */
  readonly secureContext: SecureContext;
  readonly deviceId: string;
  readonly hostname: string;
  readonly fingerprint: string;
  readonly inventory: Inventory;
  /** Last sequence number the server acknowledged, as far as we know. */
  readonly ackedSeq: number;
  readonly connectTimeoutMs: number;
  /** How long a check-in may wait for its ack before the channel counts as broken. */
  readonly ackTimeoutMs: number;
  /** Overrides the server's interval (tests, diagnostics). */
  readonly intervalOverrideSec?: number;
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly onWelcome: (w: Welcome) => void;
  readonly onAck: (seq: number, at: number) => void;
  /** The server changed the interval with a `config` message (the value in use is passed). */
  readonly onInterval?: (intervalSec: number) => void;
  /** The outbox, delivered once the channel works (protocol 3 servers). */
  readonly outbox?: EventSource;
  /** Certificate renewal over this channel (protocol 3 servers): the hook of the certificate current now, if it may renew. */
  readonly renewal?: () => RenewalHook | undefined;
  /** The server named the CAs to trust (CA rotation). */
  readonly onTrust?: (caCertificates: string[]) => void;
  /** Opens the TLS connection (e.g. through an HTTP CONNECT tunnel); default: direct. */
  readonly connect?: ConnectFn;
}

/** Opens a TLS socket for the WebSocket; see proxy.ts. */
export type ConnectFn = () => Promise<TLSSocket>;

/** What the connection needs to renew the certificate; see renewal.ts. */
export interface RenewalHook {
  /** True when the certificate in use should be renewed now. */
  due(): boolean;
  /** Makes a new key and a CSR for it. */
  request(): Promise<string>;
  /** Checks the renewed certificate and stores it beside the old one. */
  accept(certPem: string): Promise<void>;
}

/** The failure code a channel ends with when it closes to switch to a renewed certificate. */
export const CERT_RENEWED = 'CERT_RENEWED';

/** The check-in interval before the server gives one. */
export const DEFAULT_INTERVAL_SEC = 60;

/** Builds the inventory sent in `hello`. */
export function collectInventory(): Inventory {
  return { os: os.type(), release: os.release(), arch: os.arch(), cpus: os.cpus().length, memoryBytes: os.totalmem() };
}

/** Runs one connection until it ends; resolves with why, or null when stopped. */
export async function runConnection(p: ConnectionParams): Promise<Failure | null> {
  let tunnel: TLSSocket | undefined;
  if (p.connect) {
    try {
      tunnel = await p.connect();
    } catch (err) {
      return p.signal.aborted ? null : classifyError(err);
    }
    if (p.signal.aborted) {
      tunnel.destroy();
      return null;
    }
  }
  return runChannel(p, tunnel);
}

function runChannel(p: ConnectionParams, tunnel: TLSSocket | undefined): Promise<Failure | null> {
  return new Promise((resolve) => {
    const decoder = serverMessageDecoder();
    let failure: Failure | undefined;
    let retryAfterMs: number | undefined;
    let serverMessage = '';
    let seq = p.ackedSeq;
    let pendingSeq: number | null = null;
    let intervalSec = DEFAULT_INTERVAL_SEC;
    let checkinTimer: NodeJS.Timeout | null = null;
    let ackTimer: NodeJS.Timeout | null = null;
    let welcomed = false;
    let settled = false;
    let delivery: EventDelivery | null = null;
    let renewState: 'idle' | 'requested' | 'done' = 'idle';
    const sendFrame = (frame: string): boolean => {
      if (ws.readyState !== ws.OPEN) return false;
      ws.send(frame);
      return true;
    };
    let hook: RenewalHook | undefined;
    const maybeRenew = (): void => {
      if (renewState !== 'idle') return;
      hook = p.renewal?.();
      if (!hook?.due()) return;
      renewState = 'requested';
      p.log.info('certificate nears expiry; requesting a renewed one');
      hook.request().then(
        (csr) => sendFrame(encode({ type: 'renew', csr })),
        (err: unknown) => {
          renewState = 'done';
          p.log.error({ err: (err as Error).message }, 'cannot make a renewal request');
        },
      );
    };
    const onRenewed = (certPem: string): void => {
      if (renewState !== 'requested' || !hook) return protocolFailure('unexpected renewed');
      renewState = 'done';
      hook.accept(certPem).then(
        () => {
          setFailure({ class: 'CLOSED', code: CERT_RENEWED, message: 'switching to the renewed certificate', retryable: true });
          ws.close(1000, 'switching to a renewed certificate');
        },
        (err: unknown) => p.log.error({ err: (err as Error).message }, 'renewed certificate not usable; keeping the current one'),
      );
    };

    const ws = new WebSocket(`wss://${net.isIPv6(p.host) ? `[${p.host}]` : p.host}:${p.port}${p.path}`, {
      secureContext: p.secureContext,
      servername: net.isIP(p.host) ? undefined : p.host,
      minVersion: 'TLSv1.2',
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
      handshakeTimeout: p.connectTimeoutMs,
      ...(tunnel ? { createConnection: () => tunnel } : {}),
    } as ConstructorParameters<typeof WebSocket>[2]);

    const setFailure = (f: Failure): void => {
      failure ??= f;
    };
    const clearTimers = (): void => {
      if (checkinTimer) clearTimeout(checkinTimer);
      if (ackTimer) clearTimeout(ackTimer);
      checkinTimer = ackTimer = null;
    };
    const finish = (result: Failure | null): void => {
      if (settled) return;
      settled = true;
      clearTimers();
      delivery?.stop();
      p.signal.removeEventListener('abort', onAbort);
      resolve(result);
    };
    const onAbort = (): void => {
      clearTimers();
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(1000, 'agent stopping');
      finish(null);
    };
    p.signal.addEventListener('abort', onAbort);
    if (p.signal.aborted) return onAbort();

    const protocolFailure = (message: string): void => {
      setFailure({ class: 'PROTOCOL', code: 'MALFORMED_FRAME', message, retryable: true });
      ws.close(CloseCode.MALFORMED_FRAME, message.slice(0, 120));
    };
    const sendCheckin = (): void => {
      if (ws.readyState !== ws.OPEN) return;
      if (pendingSeq === null) {
        seq += 1;
        pendingSeq = seq;
        ws.send(encode({ type: 'checkin', seq, sentAt: Date.now(), uptimeSec: Math.round(os.uptime()), load1: os.loadavg()[0] ?? 0 }));
        ackTimer = setTimeout(() => {
          setFailure({ class: 'TIMEOUT', code: 'ACK_TIMEOUT', message: `check-in ${pendingSeq} was not acknowledged within ${p.ackTimeoutMs} ms`, retryable: true });
          ws.terminate();
        }, p.ackTimeoutMs);
      }
      checkinTimer = setTimeout(sendCheckin, intervalSec * 1000);
    };
    const onMessage = (msg: ServerMessage): void => {
      switch (msg.type) {
        case 'welcome':
          if (welcomed) return protocolFailure('second welcome');
          welcomed = true;
          seq = Math.max(seq, msg.lastSeq);
          intervalSec = p.intervalOverrideSec ?? msg.intervalSec;
          p.onWelcome(msg);
          sendCheckin();
          if (msg.protocol >= 3 && p.outbox) {
            delivery = new EventDelivery(p.outbox, sendFrame, p.log, p.ackTimeoutMs, (message) => {
              setFailure({ class: 'TIMEOUT', code: 'ACK_TIMEOUT', message, retryable: true });
              ws.terminate();
            });
            delivery.start(msg.lastEventSeq ?? 0).catch((err: unknown) => {
              setFailure({ class: 'CLOSED', code: 'OUTBOX_WRITE_FAILED', message: `cannot renumber the outbox: ${(err as Error).message}`, retryable: true });
              ws.close(1011, 'outbox failure');
            });
          }
          if (msg.protocol >= 3) maybeRenew();
          return;
        case 'events_ack':
          delivery?.acked(msg.upTo);
          return;
        case 'renewed':
          return onRenewed(msg.certificate);
        case 'trust':
          p.onTrust?.(msg.caCertificates);
          return;
        case 'report_ack':
          return protocolFailure('unexpected report_ack');
        case 'diagnose_ack':
          return protocolFailure('unexpected diagnose_ack');
        case 'ack':
          if (msg.seq === pendingSeq) {
            pendingSeq = null;
            if (ackTimer) clearTimeout(ackTimer);
            ackTimer = null;
            p.onAck(msg.seq, Date.now());
            maybeRenew();
          }
          return;
        case 'config':
          intervalSec = p.intervalOverrideSec ?? msg.intervalSec;
          p.onInterval?.(intervalSec);
          if (checkinTimer) clearTimeout(checkinTimer);
          checkinTimer = setTimeout(sendCheckin, intervalSec * 1000);
          return;
        case 'error':
          serverMessage = `${msg.code}: ${msg.message}`;
          retryAfterMs = msg.retryAfterMs;
          p.log.warn({ code: msg.code, serverMessage: msg.message, retryAfterMs }, 'server reported an error');
          return;
      }
    };

    ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.length < 64 && chunks.push(c));
      res.on('end', () => {
        let body: { error?: { code?: string; message?: string; retryAfterMs?: number } } = {};
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
        } catch (err) {
          p.log.debug({ err: (err as Error).message }, 'refusal body is not JSON');
        }
        const header = res.headers['x-rollcall-close-code'];
        setFailure(classifyUpgradeRefusal(res.statusCode ?? 0, body, typeof header === 'string' ? header : undefined));
        ws.terminate();
        finish(failure!);
      });
      res.on('error', (err) => {
        setFailure(classifyError(err));
        finish(failure!);
      });
    });
    ws.on('open', () => {
      ws.send(
        encode({
          type: 'hello',
          protocol: PROTOCOL_VERSION,
          deviceId: p.deviceId,
          agentVersion: ROLLCALL_VERSION,
          hostname: p.hostname.slice(0, 253) || 'unknown',
          fingerprint: p.fingerprint,
          inventory: p.inventory,
          lastSeq: p.ackedSeq,
        }),
      );
      ackTimer = setTimeout(() => {
        setFailure({ class: 'TIMEOUT', code: 'WELCOME_TIMEOUT', message: `no welcome within ${p.ackTimeoutMs} ms`, retryable: true });
        ws.terminate();
      }, p.ackTimeoutMs);
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return protocolFailure('binary frame from server');
      let msg: ServerMessage;
      try {
        msg = decoder.decode(data as Buffer);
      } catch (err) {
        return protocolFailure(err instanceof RollcallError ? err.message : 'malformed frame from server');
      }
      if (msg.type === 'welcome' && ackTimer) {
        clearTimeout(ackTimer);
        ackTimer = null;
      }
      onMessage(msg);
    });
    ws.on('error', (err) => setFailure(classifyError(err)));
    ws.on('close', (code, reason) => {
      const text = reason.toString() || serverMessage;
      setFailure(classifyClose(code, text, retryAfterMs));
      finish(failure!);
    });
  });
}

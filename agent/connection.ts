/**
 * One check-in channel, from dialling to close. It resolves with the
 * classified reason the channel ended (or `null` when we stopped it), and
 * never rejects: the supervisor decides what happens next.
 */
import os from 'node:os';
import net from 'node:net';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { WebSocket } from 'ws';
import { CloseCode } from '../common/close-codes.js';
import { RollcallError } from '../common/errors.js';
import { encode, MAX_FRAME_BYTES, serverMessageDecoder, type Inventory, type Report, type ServerMessage, type Welcome } from '../common/protocol.js';
import { PROTOCOL_VERSION, ROLLCALL_VERSION } from '../common/version.js';
import { classifyClose, classifyError, classifyUpgradeRefusal, type Failure } from './errors.js';

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
  /** Reports to deliver once the channel works (protocol 2 servers only). */
  readonly reports?: ReportSource;
}

/** Where the connection takes reports from; see report-queue.ts. */
export interface ReportSource {
  next(): Report | null;
  acked(id: number): void;
  lost(): void;
  onChange(fn: () => void): () => void;
}

/** Builds the inventory sent in `hello`. */
export function collectInventory(): Inventory {
  return { os: os.type(), release: os.release(), arch: os.arch(), cpus: os.cpus().length, memoryBytes: os.totalmem() };
}

/** Runs one connection until it ends; resolves with why, or null when stopped. */
export function runConnection(p: ConnectionParams): Promise<Failure | null> {
  return new Promise((resolve) => {
    const decoder = serverMessageDecoder();
    let failure: Failure | undefined;
    let retryAfterMs: number | undefined;
    let serverMessage = '';
    let seq = p.ackedSeq;
    let pendingSeq: number | null = null;
    let intervalSec = 60;
    let checkinTimer: NodeJS.Timeout | null = null;
    let ackTimer: NodeJS.Timeout | null = null;
    let welcomed = false;
    let settled = false;
    let unsubscribe: (() => void) | null = null;
    const sendReport = (): void => {
      if (ws.readyState !== ws.OPEN) return;
      const report = p.reports?.next();
      if (report) ws.send(encode(report));
    };

    const ws = new WebSocket(`wss://${net.isIPv6(p.host) ? `[${p.host}]` : p.host}:${p.port}${p.path}`, {
      secureContext: p.secureContext,
      servername: net.isIP(p.host) ? undefined : p.host,
      minVersion: 'TLSv1.2',
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
      handshakeTimeout: p.connectTimeoutMs,
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
      unsubscribe?.();
      p.reports?.lost();
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
          if (msg.protocol >= 2 && p.reports) {
            unsubscribe = p.reports.onChange(sendReport);
            sendReport();
          }
          return;
        case 'report_ack':
          p.reports?.acked(msg.id);
          sendReport();
          return;
        case 'diagnose_ack':
          return protocolFailure('unexpected diagnose_ack');
        case 'ack':
          if (msg.seq === pendingSeq) {
            pendingSeq = null;
            if (ackTimer) clearTimeout(ackTimer);
            ackTimer = null;
            p.onAck(msg.seq, Date.now());
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

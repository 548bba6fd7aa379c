/**
 * The WebSocket step on the agent port: the upgrade to the check-in path,
 * on a fresh connection verified against our CA, and with the agent's
 * certificate one application round trip (`diagnose` → `diagnose_ack`,
 * then the server's close 1000) that does not take the device's place.
 *
 * Without a certificate the server refuses the upgrade with 401
 * CLIENT_CERT_MISSING: that answer comes from our own upgrade route, so it
 * proves the listener is reachable and ours, and the step passes.
 */
import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { WebSocket } from 'ws';
import { closeCodeName } from '../close-codes.js';
import { CHECKIN_PATH, encode, MAX_FRAME_BYTES, serverMessageDecoder, type ServerMessage } from '../protocol.js';
import { errorText, startStep } from './step-result.js';
import { hostPort } from './tcp-step.js';
import type { PortcheckFailure, StepResult } from './types.js';

/** Options of the WebSocket step. */
export interface WebsocketStepOptions {
  /** The name dialled (Host header, SNI and the name check). */
  readonly host: string;
  /** The address to connect to (the one the TCP step reached). */
  readonly address: string;
  readonly port: number;
  /** Our CA certificate, as the TLS step verified it. */
  readonly caPem: string;
  readonly clientCert?: { readonly certPem: string; readonly keyPem: string };
  readonly timeoutMs: number;
}

type Outcome = { ok: true; detail: string } | { ok: false; failure: PortcheckFailure; detail: string };

const MAX_REFUSAL_BYTES = 16 * 1024;

function refusalText(status: number, body: string, closeHeader: string | undefined): { code: string; text: string } {
  let code = `HTTP_${status}`;
  let message = '';
  try {
    const e = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown } }).error;
    if (typeof e?.code === 'string') code = e.code;
    if (typeof e?.message === 'string') message = e.message;
  } catch {
    message = body.slice(0, 120); // not our JSON error body: show what came
  }
  const close = closeHeader ? ` (close code ${closeHeader})` : '';
  return { code, text: `the server refused the upgrade: HTTP ${status} ${code}${message ? `: ${message}` : ''}${close}` };
}

function converse(opts: WebsocketStepOptions, elapsed: () => number): Promise<Outcome> {
  return new Promise((resolve) => {
    const decoder = serverMessageDecoder();
    const nonce = crypto.randomBytes(12).toString('base64url');
    let ack: Extract<ServerMessage, { type: 'diagnose_ack' }> | undefined;
    let ackMs = 0;
    let errorFrame: Extract<ServerMessage, { type: 'error' }> | undefined;
    let settled = false;
    const ws = new WebSocket(`wss://${hostPort(opts.host, opts.port)}${CHECKIN_PATH}`, {
      ca: opts.caPem,
      cert: opts.clientCert?.certPem,
      key: opts.clientCert?.keyPem,
      minVersion: 'TLSv1.2',
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
      handshakeTimeout: opts.timeoutMs,
      // Dial the address the TCP step reached, while SNI, the name check and the Host header use the name.
      // `path` is the HTTP path here; left in, net would take it for a Unix socket (ws's own connector clears it too).
      createConnection: (o: tls.ConnectionOptions) => tls.connect({ ...o, path: undefined, host: opts.address, servername: net.isIP(opts.host) ? undefined : opts.host }),
    } as ConstructorParameters<typeof WebSocket>[2]);
    const finish = (o: Outcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.terminate();
      resolve(o);
    };
    const acked = (note: string): Outcome => ({
      ok: true,
      detail: `diagnose round trip in ${ackMs} ms: instance ${ack!.instanceId}, device ${ack!.deviceId}, seen from ${ack!.clientAddress}${note}`,
    });
    const timer = setTimeout(() => {
      if (ack) finish(acked('; the server did not close afterwards'));
      else finish({ ok: false, failure: 'WS_NO_ROUNDTRIP', detail: `no answer within ${opts.timeoutMs} ms` });
    }, opts.timeoutMs);

    ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= MAX_REFUSAL_BYTES) chunks.push(c);
      });
      res.on('end', () => {
        const header = res.headers['x-rollcall-close-code'];
        const r = refusalText(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8'), typeof header === 'string' ? header : undefined);
        if (!opts.clientCert && res.statusCode === 401 && r.code === 'CLIENT_CERT_MISSING') finish({ ok: true, detail: 'reached; no agent certificate to go further' });
        else finish({ ok: false, failure: 'WS_REJECTED', detail: r.text });
      });
      res.on('error', (err) => finish({ ok: false, failure: 'WS_NO_ROUNDTRIP', detail: errorText(err) }));
    });
    ws.on('open', () => {
      if (!opts.clientCert) finish({ ok: true, detail: 'upgraded without an agent certificate' });
      else ws.send(encode({ type: 'diagnose', nonce }));
    });
    ws.on('message', (data: Buffer) => {
      try {
        const m = decoder.decode(data);
        if (m.type === 'diagnose_ack' && m.nonce === nonce) {
          ack = m;
          ackMs = elapsed();
        } else if (m.type === 'error') errorFrame = m;
      } catch (err) {
        finish({ ok: false, failure: 'WS_NO_ROUNDTRIP', detail: `the answer is not a valid frame: ${errorText(err)}` });
      }
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (ack) return finish(acked(code === 1000 ? '' : `; then closed with ${code}`));
      const name = closeCodeName(code);
      const why = errorFrame ? `${errorFrame.code}: ${errorFrame.message}` : reason.toString() || 'no reason';
      if (errorFrame || name) finish({ ok: false, failure: 'WS_REJECTED', detail: `the server closed the channel with ${code}${name ? ` ${name}` : ''} (${why})` });
      else finish({ ok: false, failure: 'WS_NO_ROUNDTRIP', detail: `the channel closed with ${code} before an answer (${why})` });
    });
    ws.on('error', (err) => finish({ ok: false, failure: 'WS_NO_ROUNDTRIP', detail: errorText(err) }));
  });
}

/** Runs the upgrade (and with a certificate the round trip). Never rejects. */
export async function websocketStep(opts: WebsocketStepOptions): Promise<StepResult> {
  const timer = startStep('websocket');
  const o = await converse(opts, timer.elapsed);
  return o.ok ? timer.pass(o.detail) : timer.fail(o.failure, o.detail);
}

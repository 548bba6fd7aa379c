/**
 * One JSON POST to the MSP portal, in bounded time and bounded memory.
 *
 * The body is read as a stream and the request is aborted as soon as it
 * passes the size cap, so an answer that never ends or is gigabytes long
 * costs at most `maxResponseBytes` of memory and `timeoutMs` of time.
 * Statuses are not interpreted here (the session does that), except that
 * the body of a non-2xx answer is discarded unread.
 */
import http from 'node:http';
import https from 'node:https';
import { RollcallError } from '../../common/errors.js';
import type { PortalCall } from './portal-shapes.js';

/** What one request needs. */
export interface PortalRequest {
  /** Base URL, ending with `/`. */
  readonly base: URL;
  readonly call: PortalCall;
  readonly body: unknown;
  /** Bearer access token; omitted for Token/Get. */
  readonly accessToken?: string;
  readonly timeoutMs: number;
  readonly maxResponseBytes: number;
  /** Aborted when the whole fetch is over (deadline, caller, or a failure elsewhere); its reason is rethrown. */
  readonly signal: AbortSignal;
  /** Connection pool to use (keep-alive across the calls of one fetch); a fresh connection when absent. */
  readonly agent?: http.Agent;
}

/** A portal answer: status, parsed JSON body (2xx only) and the Retry-After delay, if any. */
export interface PortalResponse {
  readonly status: number;
  readonly body: unknown;
  readonly retryAfterMs?: number;
}

/** Short call name for messages: `Company/Children`. */
export function callName(call: PortalCall): string {
  return call.slice(4);
}

function parseRetryAfter(header: string | null): number | undefined {
  if (header === null || !/^\d{1,6}$/.test(header.trim())) return undefined;
  return Number(header.trim()) * 1000;
}

function parseJson(bytes: Buffer, call: PortalCall): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    // No cause: V8's message quotes the body, which may hold a token.
    throw new RollcallError('SYNC_PORTAL_BAD_RESPONSE', `the MSP portal's answer to ${callName(call)} is not valid JSON`);
  }
}

/** Turns whatever the request threw into one of our errors. */
function classify(err: unknown, req: PortalRequest, local: AbortSignal): RollcallError {
  if (err instanceof RollcallError) return err;
  if (local.aborted && local.reason instanceof RollcallError) return local.reason;
  if (req.signal.aborted && req.signal.reason instanceof RollcallError) return req.signal.reason;
  const detail = err instanceof Error ? (('code' in err && typeof err.code === 'string' ? err.code : err.message) ?? '') : String(err);
  return new RollcallError('SYNC_PORTAL_UNREACHABLE', `cannot reach the MSP portal at ${req.base.origin} (${detail.slice(0, 120)})`, { retryable: true, cause: err });
}

/** Keep-alive connections for the calls of one fetch; destroy it when the fetch is over. */
export function portalAgent(base: URL, maxSockets: number): http.Agent {
  const opts = { keepAlive: true, maxSockets };
  return base.protocol === 'https:' ? new https.Agent(opts) : new http.Agent(opts);
}

/**
 * Sends one POST with a JSON body and reads the answer, with Node's own
 * HTTP client (lighter on the event loop than fetch: a sync makes hundreds
 * of these while agents are checking in).
 * Throws RollcallError: SYNC_PORTAL_UNREACHABLE, SYNC_PORTAL_TIMEOUT,
 * SYNC_PORTAL_RESPONSE_TOO_LARGE, SYNC_PORTAL_BAD_RESPONSE (2xx that is not
 * JSON), or the reason `req.signal` was aborted with.
 */
export async function postJson(req: PortalRequest): Promise<PortalResponse> {
  if (req.signal.aborted) throw classify(req.signal.reason, req, req.signal);
  const local = new AbortController();
  const timer = setTimeout(() => {
    local.abort(new RollcallError('SYNC_PORTAL_TIMEOUT', `the MSP portal did not answer ${callName(req.call)} within ${req.timeoutMs} ms`, { retryable: true }));
  }, req.timeoutMs);
  const onOuterAbort = (): void => local.abort(req.signal.reason);
  req.signal.addEventListener('abort', onOuterAbort, { once: true });
  try {
    return await exchange(req, local.signal);
  } catch (err) {
    throw classify(err, req, local.signal);
  } finally {
    clearTimeout(timer);
    req.signal.removeEventListener('abort', onOuterAbort);
  }
}

function exchange(req: PortalRequest, signal: AbortSignal): Promise<PortalResponse> {
  const url = new URL(req.call, req.base);
  const payload = Buffer.from(JSON.stringify(req.body));
  const send = url.protocol === 'https:' ? https.request : http.request;
  return new Promise<PortalResponse>((resolve, reject) => {
    const fail = (err: unknown): void => {
      request.destroy(); // ends a transfer still running: a body past the cap, a deadline, an abort
      reject(err);
    };
    const onAbort = (): void => fail(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    // A redirect is not followed: it would carry the bearer token elsewhere, or turn the POST into a GET.
    const request = send(url, {
      method: 'POST',
      agent: req.agent,
      headers: {
        accept: 'application/json',
        'content-type': 'application/json',
        'content-length': payload.length,
        ...(req.accessToken === undefined ? {} : { authorization: `Bearer ${req.accessToken}` }),
      },
    });
    request.on('error', (err) => fail(err));
    request.on('close', () => signal.removeEventListener('abort', onAbort));
    request.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const header = res.headers['retry-after'];
      const retryAfterMs = parseRetryAfter(typeof header === 'string' ? header : null);
      if (status < 200 || status > 299) {
        res.resume(); // discarded unread, the connection stays reusable
        res.on('end', () => resolve({ status, body: undefined, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) }));
        res.on('error', fail);
        return;
      }
      const declared = Number(res.headers['content-length'] ?? NaN);
      if (declared > req.maxResponseBytes) {
        fail(new RollcallError('SYNC_PORTAL_RESPONSE_TOO_LARGE', `the MSP portal's answer to ${callName(req.call)} is ${declared} bytes long; at most ${req.maxResponseBytes} are accepted`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > req.maxResponseBytes) {
          fail(new RollcallError('SYNC_PORTAL_RESPONSE_TOO_LARGE', `the MSP portal's answer to ${callName(req.call)} is larger than ${req.maxResponseBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('error', fail);
      res.on('end', () => {
        try {
          resolve({ status, body: parseJson(Buffer.concat(chunks, size), req.call) });
        } catch (err) {
          reject(err);
        }
      });
    });
    request.end(payload);
  });
}

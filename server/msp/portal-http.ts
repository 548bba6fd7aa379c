/**
 * One JSON POST to the MSP portal, in bounded time and bounded memory.
 *
 * The body is read as a stream and the request is aborted as soon as it
 * passes the size cap, so an answer that never ends or is gigabytes long
 * costs at most `maxResponseBytes` of memory and `timeoutMs` of time.
 * Statuses are not interpreted here (the session does that), except that
 * the body of a non-2xx answer is discarded unread.
 */
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

/** Reads a body stream up to `limit` bytes; throws SYNC_PORTAL_RESPONSE_TOO_LARGE past it. */
async function readCapped(body: ReadableStream<Uint8Array>, limit: number, call: PortalCall): Promise<Buffer> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        throw new RollcallError('SYNC_PORTAL_RESPONSE_TOO_LARGE', `the MSP portal's answer to ${callName(call)} is larger than ${limit} bytes`);
      }
      chunks.push(value);
    }
  } finally {
    // Stops the transfer when we gave up early; a no-op after a complete read.
    await reader.cancel().catch(() => undefined);
  }
  return Buffer.concat(chunks, size);
}

function parseJson(bytes: Buffer, call: PortalCall): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    // No cause: V8's message quotes the body, which may hold a token.
    throw new RollcallError('SYNC_PORTAL_BAD_RESPONSE', `the MSP portal's answer to ${callName(call)} is not valid JSON`);
  }
}

/** Turns whatever fetch or the body stream threw into one of our errors. */
function classify(err: unknown, req: PortalRequest, local: AbortSignal): RollcallError {
  if (err instanceof RollcallError) return err;
  if (local.aborted && local.reason instanceof RollcallError) return local.reason;
  if (req.signal.aborted && req.signal.reason instanceof RollcallError) return req.signal.reason;
  // `fetch failed` hides the useful part (ECONNREFUSED, ENOTFOUND…) in its cause.
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  const detail = cause instanceof Error ? (('code' in cause && typeof cause.code === 'string' ? cause.code : cause.message) ?? '') : String(cause);
  return new RollcallError('SYNC_PORTAL_UNREACHABLE', `cannot reach the MSP portal at ${req.base.origin} (${detail.slice(0, 120)})`, { retryable: true, cause: err });
}

/**
 * Sends one POST with a JSON body and reads the answer.
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
    const res = await fetch(new URL(req.call, req.base), {
      method: 'POST',
      headers: {
        accept: 'application/json',
        'content-type': 'application/json',
        ...(req.accessToken === undefined ? {} : { authorization: `Bearer ${req.accessToken}` }),
      },
      body: JSON.stringify(req.body),
      // A redirect would carry the bearer token elsewhere, or turn the POST into a GET.
      redirect: 'manual',
      signal: local.signal,
    });
    const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
    if (res.status < 200 || res.status > 299) {
      await res.body?.cancel().catch(() => undefined);
      return { status: res.status, body: undefined, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
    }
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > req.maxResponseBytes) {
      await res.body?.cancel().catch(() => undefined);
      throw new RollcallError('SYNC_PORTAL_RESPONSE_TOO_LARGE', `the MSP portal's answer to ${callName(req.call)} is ${declared} bytes long; at most ${req.maxResponseBytes} are accepted`);
    }
    const bytes = res.body ? await readCapped(res.body, req.maxResponseBytes, req.call) : Buffer.alloc(0);
    return { status: res.status, body: parseJson(bytes, req.call) };
  } catch (err) {
    local.abort(); // ends a transfer still running after a failure
    throw classify(err, req, local.signal);
  } finally {
    clearTimeout(timer);
    req.signal.removeEventListener('abort', onOuterAbort);
  }
}

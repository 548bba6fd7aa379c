/**
 * Failure classes of the agent: every failed attempt is put in one class,
 * so that `status` and the server can say what kind of trouble it was.
 */
import { closeCodeName, CloseCode, TERMINAL_CLOSE_CODES } from '../common/close-codes.js';
import { RollcallError } from '../common/errors.js';

/** The classes, iterable. */
export const FAILURE_CLASSES = ['DNS', 'REFUSED', 'TIMEOUT', 'TLS', 'PROXY', 'REJECTED', 'PROTOCOL', 'CLOSED'] as const;
export type FailureClass = (typeof FAILURE_CLASSES)[number];

/** A classified failure. */
export interface Failure {
  readonly class: FailureClass;
  /** A stable code: an errno, a TLS error code, one of our error codes or a close-code name. */
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
  /** Delay the server asked for, in milliseconds. */
  readonly retryAfterMs?: number;
  /** True when this certificate can never connect again (revoked, unknown). */
  readonly terminal?: boolean;
}

const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|DEPTH_ZERO|SELF_SIGNED|UNABLE_TO_|CA_PIN|TLS_|HOSTNAME_MISMATCH|ERR_OSSL)/;

/** Classifies an error thrown or emitted while connecting or talking. */
export function classifyError(err: unknown): Failure {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const code = typeof e?.code === 'string' ? e.code : 'UNKNOWN';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (err instanceof RollcallError && (err.code === 'REJECTED' || err.code.startsWith('ENROLL_TOKEN') || err.code.startsWith('CSR_'))) {
    return { class: 'REJECTED', code, message, retryable: err.retryable };
  }
  if (err instanceof RollcallError && err.code.startsWith('PROXY_')) return { class: 'PROXY', code, message, retryable: err.retryable || err.code === 'PROXY_AUTH_REQUIRED' };
  if (err instanceof RollcallError && err.code === 'CA_PIN_MISMATCH') return { class: 'TLS', code, message, retryable: true };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_NONAME' || code === 'EAI_FAIL') {
    return { class: 'DNS', code, message, retryable: true };
  }
  if (code === 'ECONNREFUSED') return { class: 'REFUSED', code, message, retryable: true };
  if (code === 'ETIMEDOUT' || code === 'TIMEOUT' || /timed out/i.test(message)) return { class: 'TIMEOUT', code, message, retryable: true };
  if (TLS_CODE.test(code) || /certificate|TLS|SSL/i.test(message)) return { class: 'TLS', code, message, retryable: true };
  // ws reports frame-level violations by the peer (oversized, bad opcode, bad UTF-8, bad close code) as WS_ERR_*.
  if (code === 'MALFORMED_FRAME' || code === 'PROTOCOL' || code.startsWith('WS_ERR_')) return { class: 'PROTOCOL', code, message, retryable: true };
  return { class: 'CLOSED', code, message, retryable: true };
}

/** Classifies a WebSocket close with the given code and reason. */
export function classifyClose(code: number, reason: string, retryAfterMs?: number): Failure {
  const name = closeCodeName(code) ?? `CLOSE_${code}`;
  const message = reason || `connection closed (${code})`;
  const terminal = TERMINAL_CLOSE_CODES.has(code);
  const protocol: number[] = [CloseCode.UNSUPPORTED_VERSION, CloseCode.MALFORMED_FRAME, CloseCode.UNEXPECTED_MESSAGE, 1002, 1003, 1007, 1009];
  const cls: FailureClass = terminal || code === CloseCode.OVERLOADED || code === CloseCode.RATE_LIMITED ? 'REJECTED' : protocol.includes(code) ? 'PROTOCOL' : 'CLOSED';
  return { class: cls, code: name, message, retryable: !terminal, terminal, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
}

/** Classifies an HTTP refusal of the upgrade (the server checked our certificate first). */
export function classifyUpgradeRefusal(status: number, body: { error?: { code?: string; message?: string; retryAfterMs?: number } }, closeHeader?: string): Failure {
  const closeCode = closeHeader ? Number(closeHeader) : NaN;
  const code = body.error?.code ?? `HTTP_${status}`;
  const message = body.error?.message ?? `the server refused the connection (HTTP ${status})`;
  const terminal = TERMINAL_CLOSE_CODES.has(closeCode);
  if (status === 429 || status === 503) {
    return { class: 'REJECTED', code, message, retryable: true, ...(body.error?.retryAfterMs === undefined ? {} : { retryAfterMs: body.error.retryAfterMs }) };
  }
  if (code.startsWith('CLIENT_CERT_')) return { class: 'TLS', code, message, retryable: code !== 'CLIENT_CERT_EXPIRED', terminal: code === 'CLIENT_CERT_EXPIRED' };
  return { class: 'REJECTED', code, message, retryable: !terminal, terminal };
}

/** One sentence per failure class: what to check or do. */
export const FAILURE_REMEDIES: Readonly<Record<FailureClass, string>> = {
  DNS: 'Check the server name in the agent\'s server list and this computer\'s DNS settings.',
  REFUSED: 'Nothing accepts connections on that port: check the server runs and the firewall / port forwarding lets the agent port through.',
  TIMEOUT: 'Packets go unanswered: check the firewall lets the agent port through, and the server is not overloaded.',
  TLS: 'The server\'s certificate was not accepted: check the address points at the Rollcall server and no TLS-inspecting proxy sits in between.',
  PROXY: 'The HTTP proxy did not open a tunnel: check the proxy address, its credentials, and that it allows CONNECT to the agent port.',
  REJECTED: 'The server refused this agent: see the code; a revoked or unknown device must be re-enrolled.',
  PROTOCOL: 'The server sent something this agent does not understand: check both run matching Rollcall versions.',
  CLOSED: 'The channel dropped (network or server restart); the agent reconnects by itself.',
};

/** Remedies for codes that say more than their class. */
const CODE_REMEDIES: Readonly<Record<string, string>> = {
  CA_PIN_MISMATCH:
    'The server presents a CA this agent does not trust (it may have rotated its CA while this agent was offline): get the new pin from the administrator (rollcall ca status) and run "rollcall-agent repin --ca-pin <pin>", or re-enroll.',
  PROXY_AUTH_REQUIRED: 'The proxy wants credentials: set the proxy as http://user:password@host:port.',
  CLIENT_CERT_EXPIRED: 'This agent\'s certificate expired before it could be renewed: re-enroll with a new token (rollcall-agent enroll --force).',
  DEVICE_REVOKED: 'The device was revoked by an administrator: re-enroll with a new token if it should connect again.',
  DEVICE_UNKNOWN: 'The server does not know this certificate: re-enroll with a new token.',
  OUTBOX_DISK_FULL: 'The disk holding the state directory is full: free space; events recorded before stay intact.',
};

/** The remedy sentence for a failure. */
export function remedyFor(f: Pick<Failure, 'class' | 'code'>): string {
  return CODE_REMEDIES[f.code] ?? FAILURE_REMEDIES[f.class];
}

/** TLS verification codes meaning: the server's chain does not lead to a CA we trust. */
const UNTRUSTED_CHAIN = new Set(['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_SIGNATURE_FAILURE']);

/**
 * Names a server certificate that does not chain to the agent's trusted
 * CA for what it means to the operator: CA_PIN_MISMATCH (wrong server, an
 * intercepting proxy, or a CA rotation this agent missed).
 */
export function asPinMismatch(f: Failure, pin: string): Failure {
  if (f.class !== 'TLS' || !UNTRUSTED_CHAIN.has(f.code)) return f;
  return {
    ...f,
    code: 'CA_PIN_MISMATCH',
    message: `the server's certificate does not chain to a CA this agent trusts (pin ${pin}; TLS said ${f.code}): a wrong server, a TLS-intercepting proxy, or the server rotated its CA while this agent was offline`,
  };
}

/**
 * Server-side error codes: each maps to an HTTP status for the APIs and is
 * listed in docs/errors.md (a test checks the list against this table).
 */
import { RollcallError } from '../common/errors.js';

/** Every error code the server's HTTP APIs answer with, and its status. */
export const SERVER_ERRORS = {
  BAD_REQUEST: 400,
  PAYLOAD_TOO_LARGE: 413,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  ENROLL_TOKEN_MALFORMED: 400,
  ENROLL_TOKEN_UNKNOWN: 401,
  ENROLL_TOKEN_EXPIRED: 401,
  ENROLL_TOKEN_USED_UP: 401,
  ENROLL_TOKEN_REVOKED: 401,
  CSR_MALFORMED: 400,
  CSR_UNSUPPORTED_KEY: 400,
  CSR_WEAK_KEY: 400,
  CSR_BAD_SIGNATURE: 400,
  CLIENT_CERT_MISSING: 401,
  CLIENT_CERT_UNTRUSTED: 401,
  CLIENT_CERT_EXPIRED: 401,
  DEVICE_UNKNOWN: 403,
  DEVICE_REVOKED: 403,
  GROUP_NOT_FOUND: 404,
  GROUP_EXISTS: 409,
  GROUP_NAME_INVALID: 400,
  GROUP_BUILTIN: 409,
  GROUP_NOT_EMPTY: 409,
  GROUP_MOVE_INTO_ITSELF: 409,
  GROUP_SYNCED: 409,
  GROUP_ACCOUNT_ROOT: 409,
  GROUP_CANNOT_HOLD_DEVICES: 409,
  GROUP_UNLINKED: 409,
  DEVICE_NOT_FOUND: 404,
  MSP_ACCOUNT_NOT_FOUND: 404,
  MSP_ACCOUNT_AMBIGUOUS: 409,
  MSP_ACCOUNT_UNLINKED: 409,
  CUSTOMER_NOT_FOUND: 404,
  CUSTOMER_AMBIGUOUS: 409,
  INSTANCE_NOT_CREATOR: 403,
  INSTANCE_CONFIRM_MISMATCH: 400,
  SYNC_INVALID_TREE: 422,
  SYNC_FILE_INVALID: 422,
  SYNC_FILE_UNREADABLE: 422,
  SYNC_PORTAL_CONFIG_INVALID: 400,
  SYNC_PORTAL_HTTP_ERROR: 502,
  SYNC_ACCOUNT_MISMATCH: 409,
  SYNC_PORTAL_MISMATCH: 409,
  SYNC_PORTAL_UNAUTHORIZED: 502,
  SYNC_PORTAL_UNREACHABLE: 502,
  SYNC_PORTAL_MAINTENANCE: 503,
  SYNC_PORTAL_BAD_RESPONSE: 502,
  SYNC_PORTAL_INCONSISTENT: 502,
  SYNC_PORTAL_RESPONSE_TOO_LARGE: 502,
  SYNC_PORTAL_TIMEOUT: 504,
  SYNC_PORTAL_ABORTED: 503,
  TOKEN_NOT_FOUND: 404,
  PORTCHECK_TOKEN_MISSING: 401,
  PORTCHECK_TOKEN_INVALID: 401,
  CA_ROTATION_RUNNING: 409,
} as const;

/** A server error code. */
export type ServerErrorCode = keyof typeof SERVER_ERRORS;

/** Creates an error that the HTTP layer turns into `{ error: { code, message } }`. */
export function httpError(code: ServerErrorCode, message: string, cause?: unknown): RollcallError {
  return new RollcallError(code, message, { retryable: code === 'RATE_LIMITED' || code === 'INTERNAL', cause });
}

/** The HTTP status for an error: its code's status, or 500. */
export function statusOf(err: unknown): number {
  if (err instanceof RollcallError && err.code in SERVER_ERRORS) return SERVER_ERRORS[err.code as ServerErrorCode];
  return 500;
}

/**
 * Rollcall's own WebSocket close codes (range 4000-4999).
 *
 * Each one is documented in docs/errors.md; a test checks the two lists
 * match. `retryable` tells the agent whether reconnecting with the same
 * certificate can ever succeed.
 */
export const CloseCode = {
  /** The agent's `hello` named a protocol version the server does not speak. */
  UNSUPPORTED_VERSION: 4000,
  /** A frame was not JSON, or did not match the message schema. */
  MALFORMED_FRAME: 4001,
  /** The certificate (or the `hello`) names no device this server knows. */
  UNKNOWN_DEVICE: 4002,
  /** The device was revoked; its certificate can never connect again. */
  REVOKED: 4003,
  /** A newer connection of the same device replaced this one. */
  REPLACED: 4004,
  /** The server is overloaded; retry after the advised delay. */
  OVERLOADED: 4005,
  /** The agent did not send `hello` in time after the upgrade. */
  HELLO_TIMEOUT: 4006,
  /** The agent sent frames faster than the per-connection limit allows. */
  RATE_LIMITED: 4007,
  /** A well-formed message arrived at the wrong time (e.g. check-in before hello). */
  UNEXPECTED_MESSAGE: 4008,
} as const;

/** Union of our close code numbers. */
export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode];

/** Close codes after which reconnecting with the same certificate is pointless. */
export const TERMINAL_CLOSE_CODES: ReadonlySet<number> = new Set([CloseCode.REVOKED, CloseCode.UNKNOWN_DEVICE]);

/** Returns the symbolic name of a close code, or undefined for codes not ours. */
export function closeCodeName(code: number): string | undefined {
  for (const [name, value] of Object.entries(CloseCode)) {
    if (value === code) return name;
  }
  return undefined;
}

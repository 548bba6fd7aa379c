/**
 * The base error type shared by every area.
 *
 * Every error Rollcall raises on purpose carries a stable `code` (listed in
 * docs/errors.md) and says whether retrying the same operation later can
 * succeed, so callers never have to parse messages.
 */
export class RollcallError extends Error {
  /** Stable, documented identifier such as `ENROLL_TOKEN_EXPIRED`. */
  readonly code: string;
  /** True when the same operation may succeed later without a change. */
  readonly retryable: boolean;

  constructor(code: string, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RollcallError';
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** Narrows an unknown thrown value to a RollcallError with the given code. */
export function hasCode(err: unknown, code: string): boolean {
  return err instanceof RollcallError && err.code === code;
}

/** Returns a one-line description of any thrown value, for logs and CLIs. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
